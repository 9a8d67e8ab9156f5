"""Tandem's routing policy vs the usual ones, replayed on the conversation trace, on a
simulated fleet that does not match the router's catalog.

A fleet holding all four GPU types (llama-3.1-8b, FP16 everywhere so every type runs
the same weights) serves the bundled Azure conversation trace, rate-scaled so the fleet
is busy; each request gets a tier (30 % interactive, 50 % standard, 20 % batch, seeded)
whose targets are `RoutingConfig.gpu_defaults()`. The simulator drives each policy
object exactly as the ingress would, feeding `LatencyCostPolicy` the TTFT/TPOT it
observes. The cost is the fleet's rent in $/hour: identical for every policy on a fixed
fleet, what differs is what it buys.

The router's prior is the catalog's roofline model, and if the simulated fleet ran
exactly that model the router would know the truth from its first request. So, per
seed, the fleet's truth departs from it (`tandem.planner.simulator.Pace`): each GPU type
runs at an efficiency drawn uniformly from [0.6, 1.4] of its model's speed; each request
brings lognormal service noise (sigma 0.2; a batch's iterations take its requests' mean
draw); and one pool, drawn, runs at half speed for a tenth of the trace, after the
warm-up. Tandem is built from the catalog prior only and learns online. The oracle is the
same `LatencyCostPolicy` given the truth as its prior: each pool's model at its true
efficiency and, inside the episode, the slowed pool's at half that (`paced`); it learns
online from the same observations; it does not know any request's noise draw. All
policies see the same arrivals, tiers, efficiencies and noise draws.

The first `WARM_UP` requests are the router's warm-up and are reported apart
(`warm-up int/std/bat`); the tier columns judge the requests after it, and `episode int`
the interactive requests that arrived during the slowdown. Below each seed's table: the
ratios over its prior each learning policy ended with, beside the truth's. Targets, after
the warm-up, per seed and tier: tandem within 2 points of the oracle, and at or above
least-loaded (`LeastLoadedPolicy`, the full scan, and `PowerOfTwoPolicy`). A second, cheap
test keeps the noiseless comparison (the fleet runs the catalog's model exactly).

Run: `.venv/bin/python -m pytest -s tests/bench/test_routing_simulated.py` (env
ROUTING_BENCH_REQUESTS, ROUTING_BENCH_RATE_SCALE and ROUTING_BENCH_SEEDS, e.g. "1,2",
change the slice, the load and the seeds).
"""

from __future__ import annotations

import os
import time

import numpy as np
from tandem.catalog import load_catalog
from tandem.perf import ReplicaModel, build_replica_model, rent_usd
from tandem.planner.simulator import (
    Pace,
    SimulationResult,
    Slo,
    Slowdown,
    attainment_by_tier,
    paced,
    simulate,
)
from tandem.planner.trace import Trace, bundled_trace_path, load_trace
from tandem.routing.config import TIERS, RoutingConfig
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.latency import LatencyModel, PoolCorrection
from tandem.routing.policy import (
    CheapestFirstPolicy,
    LeastLoadedPolicy,
    PowerOfTwoPolicy,
    RoundRobinPolicy,
)
from tandem.routing.types import Decision, PoolState, RequestFeatures

REQUESTS = int(os.environ.get("ROUTING_BENCH_REQUESTS", "8000"))
RATE_SCALE = float(os.environ.get("ROUTING_BENCH_RATE_SCALE", "4"))
SEEDS = tuple(int(s) for s in os.environ.get("ROUTING_BENCH_SEEDS", "1,2,3,4,5").split(","))
FLEET = {"H100": 1, "H200": 1, "A100-80G": 1, "L4": 3}
TIER_SHARES = {"interactive": 0.3, "standard": 0.5, "batch": 0.2}
WARM_UP = 500  # requests
EFFICIENCY = (0.6, 1.4)  # uniform range of each GPU type's speed over its model's
NOISE_SIGMA = 0.2  # lognormal, per request
SLOWDOWN_SPEED = 0.5
SLOWDOWN_SHARE = 0.1  # of the trace's span
ORACLE_GAP = 0.02  # tandem may trail the oracle by this much per tier
TANDEM, ORACLE = "tandem", "oracle"
LEAST_LOADED = ("least-loaded", "least-loaded (p2c)")


def _priors() -> dict[str, ReplicaModel]:
    """The catalog's roofline model of each pool: the router's prior."""
    catalog = load_catalog()
    model = catalog.model("llama-3.1-8b")
    return {gpu: build_replica_model(catalog, gpu, model, "fp16") for gpu in FLEET}


def _workload() -> tuple[Trace, list[str], list[RequestFeatures], RoutingConfig]:
    trace = load_trace(bundled_trace_path()).head(REQUESTS).scaled(RATE_SCALE)
    rng = np.random.default_rng(5)
    tiers = [str(t) for t in rng.choice(list(TIER_SHARES), size=len(trace),
                                        p=list(TIER_SHARES.values()))]
    requests = [RequestFeatures(prompt_tokens=int(p), max_tokens=int(o), tier=tier)
                for p, o, tier in zip(trace.prompt_tokens, trace.output_tokens, tiers)]
    return trace, tiers, requests, RoutingConfig.gpu_defaults()


def _draw_truth(seed: int, trace: Trace) -> Pace:
    """The fleet's truth for `seed`: efficiencies, noise draws and the slowdown episode."""
    rng = np.random.default_rng(seed)
    efficiency = {gpu: float(rng.uniform(*EFFICIENCY)) for gpu in FLEET}
    noise = rng.lognormal(0.0, NOISE_SIGMA, size=len(trace))
    span = SLOWDOWN_SHARE * trace.duration_s
    earliest = float(trace.arrival_s[min(WARM_UP, len(trace) - 1)])
    start = float(rng.uniform(earliest, max(earliest, float(trace.arrival_s[-1]) - span)))
    slowed = str(rng.choice(list(FLEET)))
    return Pace(efficiency, noise, [Slowdown(slowed, start, start + span, SLOWDOWN_SPEED)])


class Oracle:
    """`LatencyCostPolicy` whose prior is the fleet's truth at each decision (`paced` at
    `pace.speed`), learning online like tandem. One policy per set of pool speeds, sharing
    one set of learned corrections (ratios over a prior that is right in each); an
    observation goes to the policy in force when it is made."""

    def __init__(self, priors: dict[str, ReplicaModel], pace: Pace, config: RoutingConfig):
        self.priors, self.pace, self.config = priors, pace, config
        self._corrections: dict[str, PoolCorrection] = {}
        self._by_speeds: dict[tuple[float, ...], LatencyCostPolicy] = {}

    def in_force(self, now: float) -> LatencyCostPolicy:
        """The policy whose prior is the fleet's truth at `now`."""
        speeds = tuple(self.pace.speed(name, now) for name in self.priors)
        policy = self._by_speeds.get(speeds)
        if policy is None:
            latency = LatencyModel(
                {name: paced(model, speed) for (name, model), speed
                 in zip(self.priors.items(), speeds)},
                alpha=self.config.ewma_alpha, stale_half_life_s=self.config.stale_half_life_s)
            latency.corrections = self._corrections
            policy = self._by_speeds[speeds] = LatencyCostPolicy(latency, self.config)
        return policy

    def pick_pool(self, request: RequestFeatures, pools: list[PoolState], now: float) -> Decision:
        return self.in_force(now).pick_pool(request, pools, now)

    def observe(self, pool: PoolState, request: RequestFeatures, now: float, *,
                ttft_ms: float | None = None, tpot_ms: float | None = None) -> None:
        self.in_force(now).observe(pool, request, now, ttft_ms=ttft_ms, tpot_ms=tpot_ms)

    def observe_waiting(self, pool: PoolState, request: RequestFeatures, now: float,
                        waited_ms: float) -> None:
        self.in_force(now).observe_waiting(pool, request, now, waited_ms)


def _attainment(trace: Trace, result: SimulationResult, tiers: list[str],
                config: RoutingConfig, rows: slice) -> dict[str, float]:
    """Per tier, the share of the requests at `rows` meeting their tier's targets."""
    judged = [""] * len(tiers)
    judged[rows] = tiers[rows]
    return attainment_by_tier(trace, result, judged, {
        tier: (config.targets(tier).ttft_ms, config.targets(tier).tpot_ms) for tier in TIERS})


def _shares(result: SimulationResult) -> str:
    shares = {report.name: report.requests / max(1, result.served) for report in result.pools}
    return "/".join(f"{shares.get(gpu, 0) * 100:.0f}" for gpu in FLEET)


def _learned(policy: LatencyCostPolicy | Oracle, now: float) -> dict[str, tuple[float, float]]:
    """Per pool, the (prefill, TPOT) ratios over its prior the policy ended with."""
    latency = (policy if isinstance(policy, LatencyCostPolicy)
               else policy.in_force(now)).latency
    out = {}
    for name in FLEET:
        corrected = latency.corrected(name, now)
        out[name] = (corrected[1], corrected[3]) if corrected else (1.0, 1.0)
    return out


def test_tandem_learns_a_fleet_that_is_not_its_catalog():
    trace, tiers, requests, config = _workload()
    priors = _priors()
    pools = {gpu: (priors[gpu], count) for gpu, count in FLEET.items()}
    slo = Slo(config.targets("standard").ttft_ms, config.targets("standard").tpot_ms)
    fleet = ", ".join(f"{count}x{gpu}" for gpu, count in FLEET.items())
    print(f"\n{len(trace)} requests of the conversation trace at {RATE_SCALE:g}x rate "
          f"({len(trace) / trace.duration_s:.1f} req/s), llama-3.1-8b fp16 on {fleet}; "
          f"warm-up: the first {WARM_UP} requests")
    print("tier targets: " + ", ".join(
        f"{tier} TTFT<={config.targets(tier).ttft_ms:g}ms TPOT<={config.targets(tier).tpot_ms:g}ms"
        for tier in TIERS))
    misses = []
    for seed in SEEDS:
        pace = _draw_truth(seed, trace)
        episode = pace.slowdowns[0]
        inside = np.flatnonzero((trace.arrival_s >= episode.start_s)
                                & (trace.arrival_s < episode.end_s))
        print(f"\nseed {seed}: efficiency " + ", ".join(
            f"{gpu} {speed:.2f}" for gpu, speed in pace.efficiency.items())
              + f"; {episode.pool} at {episode.speed:g}x speed {episode.start_s:.0f}-"
              f"{episode.end_s:.0f} s (requests {inside[0]}-{inside[-1]})")
        policies = {
            TANDEM: LatencyCostPolicy(priors, config),
            ORACLE: Oracle(priors, pace, config),
            LEAST_LOADED[0]: LeastLoadedPolicy(),
            LEAST_LOADED[1]: PowerOfTwoPolicy(seed=1),
            "round-robin": RoundRobinPolicy(),
        }
        print(f"| {'policy':<18} | {'warm-up int/std/bat':>19} | {'interactive':>11} | "
              f"{'standard':>8} | {'batch':>6} | {'episode int':>11} | {'fleet $/h':>9} | "
              f"share H100/H200/A100/L4 | sim s |")
        print(f"|{'-' * 20}|{'-' * 21}|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 13}|{'-' * 11}|"
              f"{'-' * 25}|{'-' * 7}|")
        after = {}
        for name, policy in policies.items():
            started = time.process_time()
            result = simulate(trace, pools, slo, policy=policy, requests=requests, pace=pace)
            elapsed = time.process_time() - started
            warm = _attainment(trace, result, tiers, config, slice(0, WARM_UP))
            after[name] = _attainment(trace, result, tiers, config, slice(WARM_UP, None))
            during = _attainment(trace, result, tiers, config,
                                 slice(int(inside[0]), int(inside[-1]) + 1))
            print(f"| {name:<18} | {'/'.join(f'{warm[t] * 100:.1f}' for t in TIERS):>19} | "
                  f"{after[name]['interactive']:>11.1%} | {after[name]['standard']:>8.1%} | "
                  f"{after[name]['batch']:>6.1%} | {during['interactive']:>11.1%} | "
                  f"{result.cost_per_hour:>9.2f} | {_shares(result):<23} | {elapsed:>5.1f} |")
        end = float(trace.arrival_s[-1])
        learned = {name: _learned(policies[name], end) for name in (TANDEM, ORACLE)}
        print("learned by the end, prefill/TPOT ratio over its prior: tandem | oracle (prior = "
              "truth) | truth over the catalog (1/efficiency)")
        for gpu in FLEET:
            print(f"  {gpu:<9} {learned[TANDEM][gpu][0]:.2f}/{learned[TANDEM][gpu][1]:.2f} | "
                  f"{learned[ORACLE][gpu][0]:.2f}/{learned[ORACLE][gpu][1]:.2f} | "
                  f"{1 / pace.efficiency[gpu]:.2f}")
        for tier in TIERS:
            mine, oracle = after[TANDEM][tier], after[ORACLE][tier]
            checks = [(f"oracle {oracle:.2%} - {ORACLE_GAP * 100:g} pts",
                       mine >= oracle - ORACLE_GAP)]
            checks += [(f"{name} {after[name][tier]:.2%}", mine >= after[name][tier])
                       for name in LEAST_LOADED]
            print(f"  seed {seed} {tier:<11} tandem {mine:7.2%}: " + "; ".join(
                f">= {target} {'PASS' if ok else 'MISS'}" for target, ok in checks))
            misses += [f"seed {seed} {tier}: tandem {mine:.2%} < {target}"
                       for target, ok in checks if not ok]
    assert not misses, "\n".join(misses)


def _busy_per_1k(result: SimulationResult) -> float:
    """The GPU time kept busy, priced per pool, per 1k requests served (an attribution)."""
    busy_usd = sum(rent_usd(report.cost_per_hour, report.utilization * result.duration_s)
                   for report in result.pools)
    return busy_usd / result.served * 1e3


def test_tandem_policy_against_baselines_when_the_fleet_is_its_catalog():
    """The noiseless comparison: the fleet runs the router's prior exactly."""
    trace, tiers, requests, config = _workload()
    priors = _priors()
    pools = {gpu: (priors[gpu], count) for gpu, count in FLEET.items()}
    slo = Slo(config.targets("standard").ttft_ms, config.targets("standard").tpot_ms)
    policies = {
        TANDEM: LatencyCostPolicy(priors, config),
        "round-robin": RoundRobinPolicy(),
        LEAST_LOADED[1]: PowerOfTwoPolicy(seed=1),
        "cheapest-first": CheapestFirstPolicy(),
    }
    print(f"\nnoiseless: the fleet runs the catalog's model exactly; {len(trace)} requests, "
          "all judged")
    print(f"| {'policy':<18} | {'interactive':>11} | {'standard':>8} | {'batch':>6} | "
          f"{'fleet $/h':>9} | {'busy $/1k':>9} | share H100/H200/A100/L4 |")
    print(f"|{'-' * 20}|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 11}|{'-' * 11}|{'-' * 25}|")
    rows = {}
    for name, policy in policies.items():
        result = simulate(trace, pools, slo, policy=policy, requests=requests)
        attainment = _attainment(trace, result, tiers, config, slice(None))
        rows[name] = (attainment, _busy_per_1k(result))
        print(f"| {name:<18} | {attainment['interactive']:>11.1%} | "
              f"{attainment['standard']:>8.1%} | {attainment['batch']:>6.1%} | "
              f"{result.cost_per_hour:>9.2f} | {rows[name][1]:>9.4f} | {_shares(result):<23} |")
    for name, (attainment, _) in rows.items():
        # tandem meets the tight tier at least as often as any baseline...
        assert rows[TANDEM][0]["interactive"] >= attainment["interactive"] - 0.01, name
    # ...and keeps less GPU time busy per request than spreading blindly
    assert rows[TANDEM][1] <= rows["round-robin"][1]

"""Tandem's routing policy vs the usual ones, replayed on the conversation trace.

A fleet holding all four GPU types (llama-3.1-8b, FP16 everywhere so every type runs
the same weights) serves the bundled Azure conversation trace, rate-scaled so the fleet
is busy; each request gets a tier (30 % interactive, 50 % standard, 20 % batch, seeded)
whose targets are `RoutingConfig.gpu_defaults()`. The simulator drives each policy
object exactly as the ingress would, feeding `LatencyCostPolicy` the TTFT/TPOT it
observes. Reported per policy: SLO attainment per tier; the cost, the fleet's rent in
$/hour (identical for every policy on a fixed fleet: what differs is what it buys); and,
labelled as an attribution, the GPU time the policy kept busy priced per pool, per 1k
requests (`busy $/1k`).

Run: `pytest tests/bench/test_routing_simulated.py -s` (env ROUTING_BENCH_REQUESTS,
ROUTING_BENCH_RATE_SCALE change the slice and load).
"""

from __future__ import annotations

import os
import time

import numpy as np
from tandem.catalog import load_catalog
from tandem.perf import build_replica_model, rent_usd
from tandem.planner.simulator import Slo, attainment_by_tier, simulate
from tandem.planner.trace import bundled_trace_path, load_trace
from tandem.routing.config import TIERS, RoutingConfig
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.policy import CheapestFirstPolicy, PowerOfTwoPolicy, RoundRobinPolicy
from tandem.routing.types import RequestFeatures

REQUESTS = int(os.environ.get("ROUTING_BENCH_REQUESTS", "8000"))
RATE_SCALE = float(os.environ.get("ROUTING_BENCH_RATE_SCALE", "4"))
FLEET = {"H100": 1, "H200": 1, "A100-80G": 1, "L4": 3}
TIER_SHARES = {"interactive": 0.3, "standard": 0.5, "batch": 0.2}


def _fleet():
    catalog = load_catalog()
    model = catalog.model("llama-3.1-8b")
    return {gpu: (build_replica_model(catalog, gpu, model, "fp16"), count)
            for gpu, count in FLEET.items()}


def _tiers(count: int) -> list[str]:
    rng = np.random.default_rng(5)
    return list(rng.choice(list(TIER_SHARES), size=count, p=list(TIER_SHARES.values())))


def _score(trace, result, tiers, config):
    attainment = attainment_by_tier(trace, result, tiers, {
        tier: (config.targets(tier).ttft_ms, config.targets(tier).tpot_ms) for tier in TIERS})
    busy_usd = sum(rent_usd(report.cost_per_hour, report.utilization * result.duration_s)
                   for report in result.pools)
    return attainment, busy_usd / result.served * 1e3


def test_tandem_policy_against_baselines_on_the_conversation_trace():
    trace = load_trace(bundled_trace_path()).head(REQUESTS).scaled(RATE_SCALE)
    pools = _fleet()
    config = RoutingConfig.gpu_defaults()
    tiers = _tiers(len(trace))
    requests = [RequestFeatures(prompt_tokens=int(p), max_tokens=int(o), tier=tier)
                for p, o, tier in zip(trace.prompt_tokens, trace.output_tokens, tiers)]
    slo = Slo(ttft_ms=config.targets("standard").ttft_ms, tpot_ms=config.targets("standard").tpot_ms)
    policies = {
        "tandem (latency+cost)": LatencyCostPolicy({name: m for name, (m, _) in pools.items()},
                                                   config),
        "round-robin": RoundRobinPolicy(),
        "least-loaded (p2c)": PowerOfTwoPolicy(seed=1),
        "cheapest-first": CheapestFirstPolicy(),
    }
    rows = {}
    for name, policy in policies.items():
        started = time.process_time()
        result = simulate(trace, pools, slo, policy=policy, requests=requests)
        elapsed = time.process_time() - started
        attainment, busy_per_1k = _score(trace, result, tiers, config)
        shares = {report.name: report.requests / max(1, result.served) for report in result.pools}
        rows[name] = (attainment, result.cost_per_hour, busy_per_1k, shares, elapsed)

    fleet = ", ".join(f"{count}x{gpu}" for gpu, count in FLEET.items())
    print(f"\n{len(trace)} requests of the conversation trace at {RATE_SCALE:g}x rate "
          f"({len(trace) / trace.duration_s:.1f} req/s), llama-3.1-8b fp16 on {fleet}")
    print("tier targets: " + ", ".join(
        f"{tier} TTFT<={config.targets(tier).ttft_ms:g}ms TPOT<={config.targets(tier).tpot_ms:g}ms"
        for tier in TIERS))
    print(f"| {'policy':<22} | {'interactive':>11} | {'standard':>8} | {'batch':>6} | "
          f"{'fleet $/h':>10} | {'busy $/1k':>9} | share H100/H200/A100/L4 | sim s |")
    print(f"|{'-' * 24}|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 12}|{'-' * 11}|{'-' * 25}|{'-' * 7}|")
    for name, (attainment, rent, busy_per_1k, shares, elapsed) in rows.items():
        split = "/".join(f"{shares.get(gpu, 0) * 100:.0f}" for gpu in FLEET)
        print(f"| {name:<22} | {attainment['interactive']:>11.1%} | {attainment['standard']:>8.1%} "
              f"| {attainment['batch']:>6.1%} | {rent:>10.2f} | {busy_per_1k:>9.4f} | "
              f"{split:<23} | {elapsed:>5.1f} |")

    tandem = rows["tandem (latency+cost)"]
    for name, row in rows.items():
        if name != "tandem (latency+cost)":
            # Tandem should meet the tight tier at least as often as any baseline...
            assert tandem[0]["interactive"] >= row[0]["interactive"] - 0.01, name
    # ...and spend less busy GPU time per request than spreading blindly.
    assert tandem[2] <= rows["round-robin"][2]

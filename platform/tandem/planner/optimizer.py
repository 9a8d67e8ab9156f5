"""Cheapest GPU mix for a trace: an ILP over request-size buckets, checked in the simulator.

Different GPU types win on different requests: a cheap, slow L4 serves short prompts
within the latency targets at a fraction of an H100's price, while long prompts need
an H100's FLOPs to meet TTFT. Following Mélange (Griggs et al., 2024), requests are
grouped into (prompt, output) size buckets; the perf model gives each GPU type's
SLO-compliant capacity per bucket; a mixed-integer program assigns shares of every
bucket to GPU types and picks whole replica counts at least cost. The ILP reasons in
averages, so each candidate is replayed in the simulator and the load headroom is
tightened until the simulated attainment meets the target. Homogeneous fleets get
the same treatment, so the savings figure compares validated fleets only.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tandem.errors import UserError
from tandem.perf import ReplicaModel, fleet_rent_per_hour
from tandem.planner.simulator import SimulationResult, Slo, simulate
from tandem.planner.trace import Trace
from tandem.routing.policy import SizeBucketPolicy
from tandem.routing.types import RequestFeatures

PROMPT_EDGES = (128, 256, 512, 1024, 2048, 4096, 8192)
OUTPUT_EDGES = (32, 64, 128, 256, 512, 1024)
MAX_SIMULATIONS_PER_FLEET = 10


@dataclass(frozen=True)
class Bucket:
    index: int
    count: int
    rate: float  # requests per second
    prompt_tokens: float  # mean
    output_tokens: float  # mean


def bucket_index(prompt_tokens: int, output_tokens: int) -> int:
    """Row-major index over (prompt edge, output edge) bins."""
    row = bisect.bisect_left(PROMPT_EDGES, prompt_tokens)
    column = bisect.bisect_left(OUTPUT_EDGES, output_tokens)
    return row * (len(OUTPUT_EDGES) + 1) + column


def bucket_of_request(request: RequestFeatures) -> int:
    return bucket_index(request.prompt_tokens, request.max_tokens)


def bucket_trace(trace: Trace) -> list[Bucket]:
    rows = np.searchsorted(PROMPT_EDGES, trace.prompt_tokens, side="left")
    columns = np.searchsorted(OUTPUT_EDGES, trace.output_tokens, side="left")
    index = rows * (len(OUTPUT_EDGES) + 1) + columns
    buckets = []
    for value in np.unique(index):
        mask = index == value
        buckets.append(Bucket(index=int(value), count=int(mask.sum()),
                              rate=float(mask.sum()) / trace.duration_s,
                              prompt_tokens=float(trace.prompt_tokens[mask].mean()),
                              output_tokens=float(trace.output_tokens[mask].mean())))
    return buckets


@dataclass(frozen=True)
class Capacity:
    """Requests/s one replica sustains for one bucket, and whether that meets the SLO."""

    rate: float
    batch: int
    meets_slo: bool


def replica_capacity(replica: ReplicaModel, prompt: float, output: float, slo: Slo) -> Capacity:
    """Best steady-state throughput over batch sizes, within the SLO when any batch meets it.

    With B sequences in flight, a request lives `output` decode iterations plus one
    prefill iteration for each of the B requests admitted meanwhile; TPOT is that
    lifetime over its tokens, TTFT one iteration of wait plus its own prefill.
    """
    prompt_i = max(1, round(prompt))
    output = max(1.0, output)
    limit = replica.max_concurrent_seqs(prompt + output)
    best = best_any = Capacity(rate=0.0, batch=0, meets_slo=False)
    for batch in range(1, limit + 1):
        kv = batch * (prompt + output / 2)
        step = replica.decode_step(batch, kv)
        prefill = replica.prefill_time(prompt_i, batch, kv)
        lifetime = output * step + batch * max(0.0, prefill - step)
        rate = batch / (lifetime + prefill)
        if rate > best_any.rate:
            best_any = Capacity(rate=rate, batch=batch, meets_slo=False)
        tpot_ms = lifetime / output * 1e3
        ttft_ms = (step + prefill) * 1e3
        if tpot_ms <= slo.tpot_ms and ttft_ms <= slo.ttft_ms and rate > best.rate:
            best = Capacity(rate=rate, batch=batch, meets_slo=True)
    return best if best.meets_slo else best_any


@dataclass(frozen=True)
class Mix:
    """Replica counts per pool and the share of each bucket each pool takes."""

    counts: dict[str, int]
    shares: dict[int, dict[str, float]]
    cost_per_hour: float


def solve_mix(buckets: list[Bucket], replicas: Mapping[str, ReplicaModel], slo: Slo,
              headroom: float, only: str | None = None) -> Mix | None:
    """The ILP: min sum(price_g * N_g) s.t. every bucket fully assigned, pool loads <= h * N_g.

    Buckets no GPU serves within the SLO are still assigned (to the best-effort capacity)
    so the fleet stays complete; the simulator then counts their misses. Returns None
    when `only` names a GPU that cannot serve some bucket at all.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    names = [only] if only else list(replicas)
    capacity = {(b.index, g): replica_capacity(replicas[g], b.prompt_tokens, b.output_tokens, slo)
                for b in buckets for g in names}
    pairs: list[tuple[int, str, float]] = []  # (bucket, gpu, replicas needed at full load)
    for bucket in buckets:
        ok = [g for g in names if capacity[bucket.index, g].meets_slo]
        usable = ok or [g for g in names if capacity[bucket.index, g].rate > 0]
        if not usable:
            return None
        pairs += [(bucket.index, g, bucket.rate / capacity[bucket.index, g].rate) for g in usable]
    n_x, n_g = len(pairs), len(names)
    cost = np.concatenate([np.zeros(n_x), [replicas[g].price_per_hour for g in names]])
    assign = np.zeros((len(buckets), n_x + n_g))
    row_of = {b.index: row for row, b in enumerate(buckets)}
    load = np.zeros((n_g, n_x + n_g))
    for column, (bucket, gpu, need) in enumerate(pairs):
        assign[row_of[bucket], column] = 1.0
        load[names.index(gpu), column] = need
    for g in range(n_g):
        load[g, n_x + g] = -headroom
    upper = np.concatenate([np.ones(n_x), np.full(n_g, 100_000.0)])
    result = milp(cost, integrality=np.concatenate([np.zeros(n_x), np.ones(n_g)]),
                  bounds=Bounds(np.zeros(n_x + n_g), upper),
                  constraints=[LinearConstraint(assign, 1.0, 1.0),
                               LinearConstraint(load, -np.inf, 0.0)])
    if result.x is None:
        return None
    counts = {g: round(result.x[n_x + i]) for i, g in enumerate(names)}
    shares: dict[int, dict[str, float]] = {}
    for column, (bucket, gpu, _) in enumerate(pairs):
        if result.x[column] > 1e-6:
            shares.setdefault(bucket, {})[gpu] = float(result.x[column])
    cost_per_hour = fleet_rent_per_hour((replicas[g].price_per_hour, n) for g, n in counts.items())
    return Mix(counts={g: n for g, n in counts.items() if n > 0}, shares=shares,
               cost_per_hour=cost_per_hour)


@dataclass(frozen=True)
class ValidatedFleet:
    counts: dict[str, int]
    cost_per_hour: float
    simulation: SimulationResult
    meets_target: bool
    headroom: float | None = None
    shares: dict[int, dict[str, float]] | None = None


Progress = Callable[[str], None]


def _simulate_mix(trace: Trace, replicas: Mapping[str, ReplicaModel], mix: Mix,
                  slo: Slo) -> SimulationResult:
    pools = {g: (replicas[g], n) for g, n in mix.counts.items()}
    policy = SizeBucketPolicy(mix.shares, bucket_of_request)
    return simulate(trace, pools, slo, policy=policy)


def _describe(counts: Mapping[str, int]) -> str:
    return " + ".join(f"{n} x {g}" for g, n in counts.items()) or "nothing"


def optimize_mix(trace: Trace, replicas: Mapping[str, ReplicaModel], slo: Slo,
                 progress: Progress | None = None) -> ValidatedFleet | None:
    """ILP mix, headroom tightened until the simulator meets the attainment target."""
    buckets = bucket_trace(trace)
    say = progress or (lambda message: None)
    passing: ValidatedFleet | None = None
    headroom, failing = 1.0, None
    for _ in range(MAX_SIMULATIONS_PER_FLEET):
        mix = solve_mix(buckets, replicas, slo, headroom)
        if mix is None:
            return None
        result = _simulate_mix(trace, replicas, mix, slo)
        ok = result.slo_attainment >= slo.attainment
        say(f"mix {_describe(mix.counts)} (headroom {headroom:.2f}): "
            f"attainment {result.slo_attainment:.4f}")
        if ok:
            passing = ValidatedFleet(mix.counts, mix.cost_per_hour, result, True, headroom,
                                     mix.shares)
            if failing is None or failing - headroom < 0.04:
                break
            headroom = (headroom + failing) / 2  # try a looser fleet between the two
        else:
            failing = headroom
            if passing is not None:
                if failing - passing.headroom < 0.04:
                    break
                headroom = (failing + passing.headroom) / 2
            else:
                headroom *= 0.8
    return passing


def size_homogeneous(trace: Trace, replica: ReplicaModel, name: str, slo: Slo,
                     progress: Progress | None = None) -> ValidatedFleet | None:
    """Fewest replicas of one type whose simulated attainment meets the target, or None."""
    say = progress or (lambda message: None)
    mix = solve_mix(bucket_trace(trace), {name: replica}, slo, headroom=1.0, only=name)
    if mix is None:
        return None
    results: dict[int, SimulationResult] = {}

    def attainment(count: int) -> float:
        if count not in results:
            results[count] = simulate(trace, {name: (replica, count)}, slo)
            say(f"{count} x {name}: attainment {results[count].slo_attainment:.4f}")
        return results[count].slo_attainment

    low, high = 0, max(1, mix.counts.get(name, 1))
    previous = -1.0
    while (reached := attainment(high)) < slo.attainment:
        if len(results) >= MAX_SIMULATIONS_PER_FLEET or reached - previous < 1e-3:
            return None  # out of tries, or more replicas no longer help (the SLO is unreachable)
        previous = reached
        low, high = high, math.ceil(high * 1.5)
    while high - low > 1 and len(results) < 2 * MAX_SIMULATIONS_PER_FLEET:
        middle = (low + high) // 2
        if attainment(middle) >= slo.attainment:
            high = middle
        else:
            low = middle
    return ValidatedFleet({name: high}, fleet_rent_per_hour([(replica.price_per_hour, high)]),
                          results[high], True)


def require_feasible(mix: ValidatedFleet | None, homogeneous: Mapping[str, ValidatedFleet | None],
                     slo: Slo) -> ValidatedFleet:
    """The cheapest validated fleet, or a UserError saying no fleet meets the SLO."""
    candidates = [fleet for fleet in [mix, *homogeneous.values()] if fleet is not None]
    if not candidates:
        raise UserError(
            f"no fleet meets TTFT <= {slo.ttft_ms:g} ms and TPOT <= {slo.tpot_ms:g} ms for "
            f"{slo.attainment:.1%} of requests; relax the SLO or the attainment target")
    return min(candidates, key=lambda fleet: fleet.cost_per_hour)

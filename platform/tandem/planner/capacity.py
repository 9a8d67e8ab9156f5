"""What one replica of a GPU type sustains, per request-size bucket and tier, in steady state.

Different GPU types win on different requests: a cheap, slow L4 serves short prompts
within the latency targets at a fraction of an H100's price, while long prompts need
an H100's FLOPs to meet TTFT. Following Mélange (Griggs et al., 2024), requests are
grouped into (tier, prompt, output) buckets and the performance model gives each GPU
type's SLO-compliant throughput per bucket.

That throughput is a steady-state figure: it leaves out bursts, the spread of sizes
within a bucket and the tail a 99 % target is judged on. So the replicas it implies are
too few, by a factor that differs per GPU type (a replica with a bigger batch absorbs a
burst better). `CapacityFit` holds that factor per type, fitted from simulator runs of
homogeneous fleets (`fit_factor`), and the fleet optimizer divides capacity by it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tandem.perf import ReplicaModel
from tandem.planner.demand import Demand
from tandem.planner.simulator import Slo

PROMPT_EDGES = (128, 256, 512, 1024, 2048, 4096, 8192)
OUTPUT_EDGES = (32, 64, 128, 256, 512, 1024)
# Replicas the simulator needed over the steady-state estimate, assumed for a GPU type
# until a simulation of it is fitted (the median measured over the bundled trace's
# scenarios was 1.6-1.8).
PRIOR_FACTOR = 1.7


@dataclass(frozen=True)
class Bucket:
    """Requests of one tier within one (prompt, output) size bin."""

    tier: str
    slo: Slo
    count: int
    rate: float  # requests per second
    prompt_tokens: float  # mean
    output_tokens: float  # mean


def bucket_index(prompt_tokens: int, output_tokens: int) -> int:
    """Row-major index over (prompt edge, output edge) bins."""
    row = bisect.bisect_left(PROMPT_EDGES, prompt_tokens)
    column = bisect.bisect_left(OUTPUT_EDGES, output_tokens)
    return row * (len(OUTPUT_EDGES) + 1) + column


def bucket_demand(demand: Demand) -> list[Bucket]:
    trace = demand.trace
    rows = np.searchsorted(PROMPT_EDGES, trace.prompt_tokens, side="left")
    columns = np.searchsorted(OUTPUT_EDGES, trace.output_tokens, side="left")
    index = rows * (len(OUTPUT_EDGES) + 1) + columns
    buckets = []
    for tier in demand.tiers:
        mine = demand.tier_of_request == tier.name
        for value in np.unique(index[mine]):
            mask = mine & (index == value)
            buckets.append(Bucket(tier=tier.name, slo=tier.slo, count=int(mask.sum()),
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
        ttft_ms = (step + prefill + replica.request_overhead) * 1e3
        if tpot_ms <= slo.tpot_ms and ttft_ms <= slo.ttft_ms and rate > best.rate:
            best = Capacity(rate=rate, batch=batch, meets_slo=True)
    return best if best.meets_slo else best_any


def capacity_table(buckets: list[Bucket], replicas: Mapping[str, ReplicaModel]
                   ) -> dict[tuple[int, str], Capacity]:
    """(bucket position, GPU) -> capacity: computed once per plan, read by every solve."""
    return {(i, gpu): replica_capacity(replica, b.prompt_tokens, b.output_tokens, b.slo)
            for i, b in enumerate(buckets) for gpu, replica in replicas.items()}


def steady_state_replicas(buckets: list[Bucket], table: Mapping[tuple[int, str], Capacity],
                          gpu: str) -> float:
    """Replicas of `gpu` that serve every bucket at steady-state capacity (fractional);
    infinite when some bucket gets no throughput at all."""
    total = 0.0
    for i, bucket in enumerate(buckets):
        rate = table[i, gpu].rate
        if rate <= 0:
            return math.inf
        total += bucket.rate / rate
    return total


@dataclass(frozen=True)
class CapacityFit:
    """Per GPU type: replicas the simulator needed over the steady-state estimate."""

    factors: dict[str, float]
    fitted: frozenset[str]  # the types whose factor comes from their own simulation

    def factor(self, gpu: str) -> float:
        return self.factors.get(gpu, PRIOR_FACTOR)


def fit_factor(validated_replicas: int, steady_state: float) -> float:
    """The factor one homogeneous simulation implies."""
    return validated_replicas / steady_state


def fit_capacity(fits: Mapping[str, float], gpus: Iterable[str]) -> CapacityFit:
    """Each type's own factor where a simulation fitted one, else the median of the fitted
    ones (else the prior)."""
    fallback = float(np.median(list(fits.values()))) if fits else PRIOR_FACTOR
    return CapacityFit({gpu: fits.get(gpu, fallback) for gpu in gpus}, frozenset(fits))

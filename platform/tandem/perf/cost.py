"""What serving costs: the rent of GPU time.

A fleet's cost is its rent, price x replicas x hours, whoever it serves. A request's cost
is the rent of the replica time it takes when its replica runs full: the compute of its
prefill plus its share of full-batch decode steps. That figure depends on the hardware,
the model and the request's size, not on how busy the pool is right now, so a busy
expensive pool does not look cheap, and ranking pools by it ranks them by work per
dollar. The router, the simulator and the benchmarks all price with these functions.
"""

from __future__ import annotations

from tandem.perf.pool import PoolConstants

SECONDS_PER_HOUR = 3600.0


def rent_usd(price_per_hour: float, replica_seconds: float) -> float:
    """The rent of `replica_seconds` of replica time at `price_per_hour` per replica."""
    return price_per_hour * replica_seconds / SECONDS_PER_HOUR


def fleet_rent_per_hour(pools) -> float:
    """USD/hour of a fleet given as (price per replica-hour, replicas) pairs."""
    return sum(price * replicas for price, replicas in pools)


def replica_seconds_at_capacity(constants: PoolConstants, prompt: int, output: int) -> float:
    """Replica time a request takes on a full replica: its prefill's compute, and each
    decode step shared by as many sequences of its size as the replica holds."""
    (_, overhead, mem_fixed, mem_per_token, flop, attn, kv_capacity, max_seqs) = constants
    size = prompt + output
    slots = kv_capacity // size if size > 0 else max_seqs
    if slots > max_seqs:
        slots = max_seqs
    if slots < 1:
        slots = 1
    memory = mem_fixed + mem_per_token * slots * (prompt + 0.5 * output)
    compute = flop * slots
    full_step = overhead + (memory if memory > compute else compute)
    decode_steps = output - 1 if output > 1 else 0
    return flop * prompt + attn * prompt * prompt + decode_steps * full_step / slots


def request_cost_usd(constants: PoolConstants, price_per_hour: float, prompt: int,
                     output: int) -> float:
    """The rent of the replica time a request of this size takes on this pool (USD)."""
    return rent_usd(price_per_hour, replica_seconds_at_capacity(constants, prompt, output))

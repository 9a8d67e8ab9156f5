"""What serving costs: the rent of GPU time.

A fleet's cost is its rent, price x replicas x hours, whoever it serves. A request's cost
is the rent of the replica time it takes when its replica runs full: the compute of its
prefill plus its share of full-batch decode steps (`replica_seconds_at_capacity`, also in
`join_pool`'s pass, the router's hot path). That figure depends on the hardware, the
model and the request's size, not on how busy the pool is right now, so a busy expensive
pool does not look cheap, and ranking pools by it ranks them by work per dollar. The
router, the ingress, the simulator and the benchmarks all price with these functions.
"""

from __future__ import annotations

from collections.abc import Iterable

from tandem.perf.pool import SECONDS_PER_HOUR, PoolConstants, replica_seconds_at_capacity


def rent_usd(price_per_hour: float, replica_seconds: float) -> float:
    """The rent of `replica_seconds` of replica time at `price_per_hour` per replica."""
    return price_per_hour * replica_seconds / SECONDS_PER_HOUR


def fleet_rent_per_hour(pools: Iterable[tuple[float, int]]) -> float:
    """USD/hour of a fleet given as (price per replica-hour, replicas) pairs."""
    return sum(price * replicas for price, replicas in pools)


def request_cost_usd(constants: PoolConstants, price_per_hour: float, prompt: int,
                     output: int) -> float:
    """The rent of the replica time a request of this size takes on a full replica (USD)."""
    return rent_usd(price_per_hour, replica_seconds_at_capacity(constants, prompt, output))

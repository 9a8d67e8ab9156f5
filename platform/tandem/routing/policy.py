"""The routing policy seam and the simple policies every deployment can fall back on.

A policy is a pure function of plain data: no Ray, HTTP or clock; the caller passes
`now`. The live ingress calls `pick_pool` per request with pool states from its
metrics; the planner's simulator calls it with the simulated pools, so the same
object can be judged offline before it routes real traffic.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tandem.routing.types import Decision, PoolState, RequestFeatures


class NoHealthyPool(LookupError):
    """Every pool is down: the caller answers 503."""


@runtime_checkable
class RoutingPolicy(Protocol):
    """Chooses the pool for one request."""

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision: ...


def healthy_pools(pools: Sequence[PoolState]) -> list[PoolState]:
    """The pools a load-blind policy may pick: healthy ones with replicas, the warm ones
    only while there are any (it cannot weigh a cold start against waiting elsewhere)."""
    usable = [pool for pool in pools if pool.healthy and pool.replicas > 0]
    if not usable:
        raise NoHealthyPool("no healthy pool with replicas")
    return [pool for pool in usable if not pool.cold_start_ms] or usable


class RoundRobinPolicy:
    """Each healthy pool in turn, weighted by replica count (a baseline, blind to load)."""

    def __init__(self) -> None:
        self._turn = 0

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        usable = healthy_pools(pools)
        slots = sum(pool.replicas for pool in usable)
        slot = self._turn % slots
        self._turn += 1
        for pool in usable:
            if slot < pool.replicas:
                return Decision(pool=pool.name, reason="round-robin")
            slot -= pool.replicas
        raise AssertionError("unreachable")


class LeastLoadedPolicy:
    """The healthy pool with the fewest requests per replica; ties go to the cheaper pool."""

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        best = min(healthy_pools(pools),
                   key=lambda pool: (pool.load_per_replica, pool.price_per_hour, pool.name))
        return Decision(pool=best.name,
                        reason=f"least loaded ({best.load_per_replica:.1f} per replica)")


class PowerOfTwoPolicy:
    """Least loaded of two healthy pools drawn at random (seeded, so runs repeat).

    The classic load balancer: nearly as good as scanning every pool, blind to price
    and to how fast each pool is.
    """

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        usable = healthy_pools(pools)
        if len(usable) == 1:
            return Decision(pool=usable[0].name, reason="power of two: only pool")
        first, second = self._random.sample(usable, 2)
        best = min((first, second), key=lambda pool: (pool.load_per_replica, pool.name))
        return Decision(pool=best.name, reason=f"power of two: {first.name} vs {second.name}")


class CheapestFirstPolicy:
    """The cheapest pool ($/hour per replica) with room; when all are full, the least loaded.

    Room means fewer than `max_load_per_replica` requests (running + queued) per replica.
    A baseline that fills cheap hardware first without predicting latency.
    """

    def __init__(self, max_load_per_replica: float = 16.0) -> None:
        self.max_load_per_replica = max_load_per_replica

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        usable = healthy_pools(pools)
        roomy = [pool for pool in usable if pool.load_per_replica < self.max_load_per_replica]
        if roomy:
            best = min(roomy, key=lambda pool: (pool.price_per_hour, pool.name))
            return Decision(pool=best.name, reason="cheapest with room")
        best = min(usable, key=lambda pool: (pool.load_per_replica, pool.price_per_hour, pool.name))
        return Decision(pool=best.name, reason="all full: least loaded")

"""The cheapest GPU mix by linear reasoning: a mixed-integer program over request buckets.

It assigns shares of every (tier, size) bucket to GPU types and picks whole replica
counts at least cost, with each type's steady-state capacity divided by its fitted
`CapacityFit` factor, owned replicas free and rentable ones capped. The answer is a
starting point: `tandem.planner.search` replays it in the simulator with the router the
fleet will run, and searches around it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tandem.planner.capacity import Bucket, Capacity, CapacityFit
from tandem.planner.fleet import Fleet, Offer

MAX_REPLICAS = 100_000  # the solver's bound for a type nobody capped


def solve_mix(buckets: list[Bucket], table: Mapping[tuple[int, str], Capacity],
              offers: Mapping[str, Offer], fit: CapacityFit, scale: float = 1.0
              ) -> Fleet | None:
    """min sum(rent of rented replicas) s.t. every bucket assigned, each type's load within
    its replicas; `scale` multiplies every factor (a search asks for more room with it).

    Buckets no GPU serves within the SLO are still assigned (to the best-effort capacity)
    so the fleet stays complete; the simulator then counts their misses. Returns None when
    some bucket has no GPU at all or the caps leave no feasible fleet.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    names = list(offers)
    pairs: list[tuple[int, str, float]] = []  # (bucket, gpu, replicas it needs at full load)
    for i, bucket in enumerate(buckets):
        ok = [g for g in names if table[i, g].meets_slo]
        usable = ok or [g for g in names if table[i, g].rate > 0]
        if not usable:
            return None
        pairs += [(i, g, bucket.rate / table[i, g].rate) for g in usable]
    n_x, n_g = len(pairs), len(names)
    # columns: bucket shares, then owned replicas per type, then rented replicas per type
    owned = slice(n_x, n_x + n_g)
    rented = slice(n_x + n_g, n_x + 2 * n_g)
    width = n_x + 2 * n_g
    cost = np.zeros(width)
    cost[rented] = [offers[g].replica.price_per_hour for g in names]
    assign = np.zeros((len(buckets), width))
    load = np.zeros((n_g, width))
    for column, (i, gpu, need) in enumerate(pairs):
        assign[i, column] = 1.0
        load[names.index(gpu), column] = need * fit.factor(gpu) * scale
    for g in range(n_g):
        load[g, n_x + g] = load[g, n_x + n_g + g] = -1.0
    upper = np.ones(width)
    upper[owned] = [offers[g].owned_replicas for g in names]
    upper[rented] = [MAX_REPLICAS if offers[g].max_replicas is None
                     else max(0, offers[g].max_replicas - offers[g].owned_replicas)
                     for g in names]
    constraints = [LinearConstraint(assign, 1.0, 1.0), LinearConstraint(load, -np.inf, 0.0)]
    integrality = np.concatenate([np.zeros(n_x), np.ones(2 * n_g)])
    result = milp(cost, integrality=integrality, bounds=Bounds(np.zeros(width), upper),
                  constraints=constraints)
    if result.x is None:
        return None
    counts = {g: round(result.x[n_x + i]) + round(result.x[n_x + n_g + i])
              for i, g in enumerate(names)}
    return {g: n for g, n in counts.items() if n > 0}

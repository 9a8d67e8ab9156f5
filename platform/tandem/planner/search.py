"""Fleets validated in the simulator with the router they will run, and the searches over them.

Every candidate fleet, homogeneous or mixed, is replayed against the demand with the
routing policy it will serve with (`tandem` by default), and judged per tier from the
simulated measurements. Attainment is not assumed monotone in the fleet: a search stops
at a fleet that passes and whose every cheaper neighbour (one replica fewer of a type, or
one replica of a type changed to a cheaper one) fails, then steps on from the near misses
cheaper than it; or when its budget of simulations is spent. Every search gets the same
budget, and results are shared through one cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from tandem.perf import ReplicaModel
from tandem.planner.demand import NO_TARGET_MS, Demand, Judgement, judge
from tandem.planner.fleet import Fleet, Offer, allowed, ceiling, describe, fleet_cost, normalized
from tandem.planner.simulator import SimulationResult, simulate
from tandem.routing.config import RoutingConfig, TierTargets
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.policy import LeastLoadedPolicy, RoutingPolicy

POLICIES = ("tandem", "least-loaded")
MAX_SIMULATIONS_PER_SEARCH = 40
GROWTH = 1.25  # a failing homogeneous fleet grows by this much (at least one replica)
SHRINK = 0.88  # a passing one with no known failure below tries this much less first
NO_GAIN = 1e-3  # growing that gains less attainment than this means the SLO is out of reach
REPAIR_MARGIN = 0.01  # failing fleets this close to the target are worth a step more

Progress = Callable[[str], None]


def routing_config(demand: Demand) -> RoutingConfig:
    """The router's tiers for a simulated fleet: requests carry their own targets, so only
    the strictest (what fast pools are kept free for) and the loosest matter."""
    strict = TierTargets(ttft_ms=min(demand.strictest.ttft_ms, NO_TARGET_MS),
                         tpot_ms=min(demand.strictest.tpot_ms, NO_TARGET_MS))
    loose = TierTargets(ttft_ms=min(max(t.ttft_ms for t in demand.tiers), NO_TARGET_MS),
                        tpot_ms=min(max(t.tpot_ms for t in demand.tiers), NO_TARGET_MS))
    return RoutingConfig(tiers={"interactive": strict, "standard": loose, "batch": loose})


def make_policy(name: str, models: Mapping[str, ReplicaModel], demand: Demand) -> RoutingPolicy:
    """The policy the live ingress runs under the same name (`tandem.serve.router`)."""
    if name == "least-loaded":
        return LeastLoadedPolicy()
    return LatencyCostPolicy(dict(models), routing_config(demand))


@dataclass(frozen=True)
class Validation:
    """One fleet replayed in the simulator."""

    fleet: Fleet
    cost_per_hour: float
    judgement: Judgement
    simulation: SimulationResult = field(repr=False)

    @property
    def passes(self) -> bool:
        return self.judgement.passes


class Validator:
    """Simulates fleets with one policy against one demand; remembers every result."""

    def __init__(self, demand: Demand, offers: Mapping[str, Offer], policy: str,
                 progress: Progress | None = None) -> None:
        self.demand = demand
        self.offers = offers
        self.policy = policy
        self.say = progress or (lambda message: None)
        self.results: dict[tuple[tuple[str, int], ...], Validation] = {}
        self._features = demand.request_features()

    def known(self, fleet: Mapping[str, int]) -> Validation | None:
        return self.results.get(tuple(normalized(fleet).items()))

    def __call__(self, fleet: Mapping[str, int]) -> Validation:
        fleet = normalized(fleet)
        key = tuple(fleet.items())
        if key not in self.results:
            models = {gpu: self.offers[gpu].replica for gpu in fleet}
            result = simulate(self.demand.trace,
                              {gpu: (models[gpu], count) for gpu, count in fleet.items()},
                              self.demand.strictest,
                              policy=make_policy(self.policy, models, self.demand),
                              requests=self._features)
            verdict = judge(self.demand, result)
            self.results[key] = Validation(fleet, fleet_cost(self.offers, fleet), verdict, result)
            self.say(f"{describe(fleet, self.offers)} (${self.results[key].cost_per_hour:.2f}/h): "
                     + verdict.describe())
        return self.results[key]

    def passing(self) -> list[Validation]:
        return [v for v in self.results.values() if v.passes]


class Budget:
    """At most `limit` new simulations for one search (cached results are free)."""

    def __init__(self, validator: Validator, limit: int = MAX_SIMULATIONS_PER_SEARCH) -> None:
        self.validator = validator
        self.left = limit

    def check(self, fleet: Mapping[str, int]) -> Validation | None:
        """The fleet's validation, or None when it would take a simulation and none is left."""
        cached = self.validator.known(fleet)
        if cached is not None:
            return cached
        if self.left <= 0:
            return None
        self.left -= 1
        return self.validator(fleet)


def size_homogeneous(budget: Budget, gpu: str, estimate: float) -> Validation | None:
    """The fewest replicas of `gpu` that pass, starting from `estimate` replicas: grow until
    one passes, then shrink until one replica fewer fails. None when no count within the
    type's cap and the budget passes, or growing stops raising attainment (the SLO is out
    of reach; a fleet that fails only because its queue grows is always grown)."""
    offer = budget.validator.offers[gpu]
    cap = offer.max_replicas
    if not math.isfinite(estimate) or (cap is not None and cap < 1):
        return None
    count = ceiling(estimate) if cap is None else min(ceiling(estimate), cap)
    verdict = budget.check({gpu: count})
    previous = -1.0
    while verdict is not None and not verdict.passes:
        stalled = (not verdict.judgement.attained
                   and verdict.judgement.worst - previous < NO_GAIN)
        if (cap is not None and count >= cap) or stalled:
            return None
        previous = verdict.judgement.worst
        count = max(count + 1, math.ceil(count * GROWTH))
        count = count if cap is None else min(count, cap)
        verdict = budget.check({gpu: count})
    if verdict is None:
        return None
    passing = count
    while True:
        below = [n for n in range(1, passing) if (v := budget.validator.known({gpu: n}))
                 and not v.passes]
        failing = max(below, default=0)
        if passing - failing <= 1:
            break  # one fewer fails (or is nothing): no cheaper neighbour passes
        if failing == 0 and passing > 2:
            trial = max(1, math.floor(passing * SHRINK))
        else:
            trial = (failing + passing) // 2
        verdict = budget.check({gpu: trial})
        if verdict is None:
            break
        if verdict.passes:
            passing = trial
    return budget.validator({gpu: passing})


def neighbours_below(fleet: Fleet, offers: Mapping[str, Offer], ceiling_cost: float
                     ) -> list[Fleet]:
    """Every allowed fleet one step away (a replica more or fewer of a type, or one
    replica's type changed) that costs less than `ceiling_cost`; cheapest first. With the
    fleet's own cost as the ceiling, these are its cheaper neighbours."""
    steps = [{**fleet, gpu: fleet.get(gpu, 0) + 1} for gpu in offers]
    for gpu in fleet:
        steps.append({**fleet, gpu: fleet[gpu] - 1})
        steps += [{**fleet, gpu: fleet[gpu] - 1, other: fleet.get(other, 0) + 1}
                  for other in offers if other != gpu]
    found = {tuple(step.items()): step for step in map(normalized, steps)
             if step and allowed(offers, step)
             and fleet_cost(offers, step) < ceiling_cost - 1e-9}
    return sorted(found.values(), key=lambda step: (fleet_cost(offers, step), str(step)))


def descend(budget: Budget, start: Validation) -> Validation:
    """From a passing fleet, move to the cheapest passing cheaper neighbour until none passes
    (a local optimum) or the budget is spent."""
    current = start
    while True:
        for neighbour in neighbours_below(current.fleet, budget.validator.offers,
                                          current.cost_per_hour):
            verdict = budget.check(neighbour)
            if verdict is None:
                return current
            if verdict.passes:
                current = verdict
                break
        else:
            return current


def repair(budget: Budget, best: Validation) -> Validation:
    """Look for a cheaper passing fleet next to the near misses: failing fleets cheaper than
    `best` within `REPAIR_MARGIN` of the target, closest first, each expanded once. A local
    optimum of `descend` can sit two steps from a cheaper one (one replica's type changed
    misses by a hair; a second change passes)."""
    validator = budget.validator
    target = validator.demand.attainment
    expanded: set[tuple[tuple[str, int], ...]] = set()
    while True:
        near = [v for v in validator.results.values()
                if not v.passes and v.cost_per_hour < best.cost_per_hour - 1e-9
                and v.judgement.worst >= target - REPAIR_MARGIN
                and tuple(v.fleet.items()) not in expanded]
        if not near:
            return best
        closest = max(near, key=lambda v: (v.judgement.worst, -v.cost_per_hour))
        expanded.add(tuple(closest.fleet.items()))
        for neighbour in neighbours_below(closest.fleet, validator.offers, best.cost_per_hour):
            verdict = budget.check(neighbour)
            if verdict is None:
                return best
            if verdict.passes:
                best = descend(budget, verdict)
                break


def fleets_cheaper_than(offers: Mapping[str, Offer], bound: float, limit: int
                        ) -> list[Fleet] | None:
    """Every allowed non-empty fleet costing less than `bound`, cheapest first; None when
    there are more than `limit` (or infinitely many)."""
    names = list(offers)
    found: list[tuple[float, Fleet]] = []

    def extend(index: int, fleet: Fleet, cost: float) -> Iterator[tuple[float, Fleet]]:
        if index == len(names):
            if fleet:
                yield cost, dict(fleet)
            return
        offer = offers[names[index]]
        count = 0
        while offer.allows(count):
            price = cost + offer.cost_per_hour(count)
            if price >= bound - 1e-9 and count > offer.owned_replicas:
                break
            if price < bound - 1e-9:
                yield from extend(index + 1, {**fleet, names[index]: count} if count else fleet,
                                  price)
            count += 1

    if not math.isfinite(bound) and any(o.max_replicas is None for o in offers.values()):
        return None
    for item in extend(0, {}, 0.0):
        found.append(item)
        if len(found) > limit:
            return None
    return [fleet for _, fleet in sorted(found, key=lambda pair: (pair[0], str(pair[1])))]


def first_passing(budget: Budget, fleets: list[Fleet]) -> Validation | None:
    """Simulate fleets in the given (cheapest-first) order; the first that passes."""
    for fleet in fleets:
        verdict = budget.check(fleet)
        if verdict is None:
            return None
        if verdict.passes:
            return verdict
    return None

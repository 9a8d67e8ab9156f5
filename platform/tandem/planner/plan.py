"""One planning run: what can be fielded, the homogeneous fleets, the mixed-fleet search.

Kept apart from the CLI so tests and notebooks call `make_plan` with plain objects, and
apart from the searches so the order of the work is stated once:

1. Each GPU type alone, sized in the simulator from its steady-state estimate; each
   sizing fits that type's capacity factor (`tandem.planner.capacity`).
2. The mixed fleet: when few enough fleets cost less than the cheapest homogeneous one,
   all of them, cheapest first (exact); otherwise the ILP with the fitted factors, given
   more room until it passes, then a local search from it and from the cheapest
   homogeneous fleet.
3. The plan is the cheapest fleet that passed, so never dearer than a homogeneous one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tandem.catalog import Catalog, ModelProfile
from tandem.errors import UserError
from tandem.perf import build_replica_model
from tandem.planner.capacity import (
    CapacityFit,
    bucket_demand,
    capacity_table,
    fit_capacity,
    fit_factor,
    steady_state_replicas,
)
from tandem.planner.demand import MAX_WAIT_S, Demand, Tier, build_demand
from tandem.planner.fleet import Offer, describe
from tandem.planner.optimizer import solve_mix
from tandem.planner.search import (
    MAX_SIMULATIONS_PER_SEARCH,
    POLICIES,
    Budget,
    Validation,
    Validator,
    descend,
    first_passing,
    fleets_cheaper_than,
    repair,
    size_homogeneous,
)
from tandem.planner.trace import Trace

HOURS_PER_MONTH = 730
MORE_ROOM = 1.15  # each retry of a failing ILP fleet asks for this much more capacity
ROOM_RETRIES = 4
# A type whose estimate alone rents for more than this many times the cheapest fleet found
# is not sized alone (it cannot be the plan; simulating thousands of replicas is slow).
OUT_OF_RANGE = 2.0


@dataclass(frozen=True)
class FleetSearch:
    """What the searches found for one demand and what the user can field."""

    best: Validation
    source: str  # how the plan was found: "exhaustive", "ILP + local search", "only <GPU>"
    homogeneous: dict[str, Validation | None]
    fit: CapacityFit
    steady_state: dict[str, float]  # replicas per type at steady-state capacity, alone
    simulated: list[Validation]  # every fleet the searches replayed
    skipped: list[str]  # GPU types not sized alone, and why


@dataclass(frozen=True)
class Plan:
    model: ModelProfile
    precision: str
    rate_scale: float
    policy: str
    demand: Demand
    offers: dict[str, Offer]
    search: FleetSearch
    notes: list[str]

    @property
    def best(self) -> Validation:
        return self.search.best

    @property
    def homogeneous(self) -> dict[str, Validation | None]:
        return self.search.homogeneous

    @property
    def best_homogeneous(self) -> Validation | None:
        fleets = [fleet for fleet in self.homogeneous.values() if fleet is not None]
        return min(fleets, key=lambda fleet: fleet.cost_per_hour) if fleets else None

    @property
    def savings(self) -> float | None:
        baseline = self.best_homogeneous
        if baseline is None or baseline.cost_per_hour == 0:
            return None
        return 1.0 - self.best.cost_per_hour / baseline.cost_per_hour


def build_offers(catalog: Catalog, model: ModelProfile, precision: str,
                 gpus: Sequence[str] | None = None, owned: Mapping[str, int] | None = None,
                 available: Mapping[str, int] | None = None
                 ) -> tuple[dict[str, Offer], list[str]]:
    """An offer per GPU type that can hold the model, and notes on what changed."""
    owned, available = dict(owned or {}), dict(available or {})
    for name in [*owned, *available]:
        catalog.gpu(name)
    names = list(gpus) if gpus else list(catalog.gpus)
    names += [name for name in owned if name not in names]
    offers, notes = {}, []
    for name in names:
        try:
            replica = build_replica_model(catalog, catalog.gpu(name), model, precision)
        except UserError as error:
            notes.append(f"{name} skipped: {error}")
            continue
        offers[name] = Offer(replica, owned.get(name, 0), available.get(name))
        if replica.precision_note:
            notes.append(replica.precision_note)
        if replica.tp > 1:
            notes.append(f"{name}: {model.name} needs tensor parallel {replica.tp} "
                         f"(weights + a useful KV cache); counts are replicas of {replica.tp} GPUs")
    if not offers:
        raise UserError(f"{model.name} fits none of {', '.join(names)}")
    return offers, notes


def make_plan(trace: Trace, catalog: Catalog, model: ModelProfile, precision: str,
              tiers: Sequence[Tier], attainment: float = 0.99, rate_scale: float = 1.0,
              gpus: Sequence[str] | None = None, owned: Mapping[str, int] | None = None,
              available: Mapping[str, int] | None = None, policy: str = "tandem",
              progress: Callable[[str], None] | None = None,
              max_wait_s: float = MAX_WAIT_S) -> Plan:
    """The cheapest fleet whose simulated attainment meets the target in every tier (a
    tier without a TTFT target held to `max_wait_s`) and whose queue does not grow."""
    if len(trace) == 0:
        raise UserError("the trace has no requests")
    say = progress or (lambda message: None)
    offers, notes = build_offers(catalog, model, precision, gpus, owned, available)
    scaled = trace.scaled(rate_scale)
    fits_context = scaled.prompt_tokens + scaled.output_tokens <= model.context_length
    if not fits_context.all():
        notes.append(f"{int((~fits_context).sum())} requests longer than {model.name}'s context "
                     f"({model.context_length} tokens) are left out")
        scaled = scaled.select(fits_context)
        if len(scaled) == 0:
            raise UserError(f"no request of the trace fits {model.name}'s context")
    demand = build_demand(scaled, tiers, attainment, max_wait_s)
    search = search_fleets(demand, offers, policy, say)
    return Plan(model=model, precision=precision, rate_scale=rate_scale, policy=policy,
                demand=demand, offers=offers, search=search, notes=notes)


def search_fleets(demand: Demand, offers: Mapping[str, Offer], policy: str = "tandem",
                  progress: Callable[[str], None] | None = None) -> FleetSearch:
    """The cheapest fleet that passes (`tandem.planner.demand.judge`: every tier's
    attainment, a queue that does not grow), with what was learned on the way. Raises
    UserError when no fleet allowed passes."""
    if policy not in POLICIES:
        raise UserError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    buckets = bucket_demand(demand)
    table = capacity_table(buckets, {gpu: offer.replica for gpu, offer in offers.items()})
    steady = {gpu: steady_state_replicas(buckets, table, gpu) for gpu in offers}
    validator = Validator(demand, offers, policy, progress)

    homogeneous: dict[str, Validation | None] = {}
    fitted: dict[str, float] = {}
    skipped: list[str] = []
    for gpu in sorted(offers, key=lambda g: steady[g] * offers[g].replica.price_per_hour):
        estimate = steady[gpu] * fit_capacity(fitted, offers).factor(gpu)
        cheapest = min((v.cost_per_hour for v in homogeneous.values() if v), default=math.inf)
        if offers[gpu].replica.price_per_hour * estimate > OUT_OF_RANGE * cheapest:
            skipped.append(f"{gpu} alone was not simulated: its estimate "
                           f"(${offers[gpu].replica.price_per_hour * estimate:,.2f}/h) is over "
                           f"{OUT_OF_RANGE:g}x the cheapest fleet found (${cheapest:,.2f}/h)")
            continue
        homogeneous[gpu] = size_homogeneous(Budget(validator), gpu, estimate)
        if homogeneous[gpu] is not None:
            fitted[gpu] = fit_factor(homogeneous[gpu].fleet[gpu], steady[gpu])
    fit = fit_capacity(fitted, offers)

    source = ""
    if len(offers) > 1:
        source = _search_mix(validator, offers, homogeneous, buckets, table, fit)
    passing = validator.passing()
    if not passing:
        raise UserError(
            "no fleet meets " + "; ".join(f"{t.name}: {demand.describe(t)}" for t in demand.tiers)
            + f" for {demand.attainment:.1%} of requests, without a growing queue, within "
            "the GPUs allowed; relax the targets, the attainment target or --available")
    best = min(passing, key=lambda v: (v.cost_per_hour, sum(v.fleet.values())))
    if len(best.fleet) == 1 and homogeneous.get(next(iter(best.fleet))) is best:
        source = "only " + next(iter(best.fleet))
    return FleetSearch(best=best, source=source or "search",
                       homogeneous={gpu: homogeneous.get(gpu) for gpu in offers}, fit=fit,
                       steady_state=steady, simulated=list(validator.results.values()),
                       skipped=skipped)


def _search_mix(validator: Validator, offers: Mapping[str, Offer],
                homogeneous: Mapping[str, Validation | None], buckets, table,
                fit: CapacityFit) -> str:
    """Validate mixed fleets (results land in the validator); say how they were searched."""
    passing = [v for v in homogeneous.values() if v is not None]
    bound = min((v.cost_per_hour for v in passing), default=float("inf"))
    budget = Budget(validator)
    every = fleets_cheaper_than(offers, bound, MAX_SIMULATIONS_PER_SEARCH)
    if every is not None:
        first_passing(budget, every)
        return "exhaustive"
    start = None
    scale = 1.0
    for _ in range(ROOM_RETRIES):
        fleet = solve_mix(buckets, table, offers, fit, scale)
        if fleet is None:
            break
        verdict = budget.check(fleet)
        if verdict is None or verdict.passes:
            start = verdict
            break
        scale *= MORE_ROOM
    cheapest_alone = min(passing, key=lambda v: v.cost_per_hour, default=None)
    starts = [v for v in (start, cheapest_alone) if v is not None and v.passes]
    starts = [v for i, v in enumerate(starts) if v not in starts[:i]]
    for verdict in starts:
        descend(budget, verdict)
    if validator.passing():
        repair(budget, min(validator.passing(), key=lambda v: v.cost_per_hour))
    validator.say(f"mix search: {MAX_SIMULATIONS_PER_SEARCH - budget.left} simulations from "
                  + " and ".join(describe(v.fleet) for v in starts) if starts else
                  "mix search: the ILP's fleets did not pass")
    return "ILP + local search"

"""The planner's answers against brute force, scarcity, owned GPUs and tiers."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_helpers import fixed_step_replica, make_trace
from tandem.errors import UserError
from tandem.planner.demand import Tier, build_demand, judge, make_tier
from tandem.planner.fleet import Offer, fleet_cost
from tandem.planner.plan import make_plan, search_fleets
from tandem.planner.search import make_policy
from tandem.planner.simulator import attainment_by_tier, simulate

CAP = 5  # replicas per type in the brute-force instances: 35 fleets, within one search budget


def _brute_force_cost(demand, offers, policy):
    """The cheapest fleet of up to CAP replicas per type that the simulator accepts."""
    best = None
    for counts in itertools.product(range(CAP + 1), repeat=len(offers)):
        fleet = {gpu: n for gpu, n in zip(offers, counts) if n}
        if not fleet:
            continue
        models = {gpu: offers[gpu].replica for gpu in fleet}
        result = simulate(demand.trace, {g: (models[g], n) for g, n in fleet.items()},
                          demand.strictest, policy=make_policy(policy, models, demand),
                          requests=demand.request_features())
        if judge(demand, result).passes:
            cost = fleet_cost(offers, fleet)
            best = cost if best is None else min(best, cost)
    return best


@st.composite
def instances(draw):
    count = draw(st.integers(20, 60))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    seconds = draw(st.floats(1.0, 6.0))
    trace = make_trace(np.sort(rng.uniform(0, seconds, count)), rng.integers(5, 300, count),
                       rng.integers(2, 40, count))
    offers = {}
    for name in ("a", "b"):
        replica = fixed_step_replica(draw(st.sampled_from([0.004, 0.008, 0.016, 0.03])),
                                     price=draw(st.sampled_from([0.5, 1.0, 1.5, 2.5, 4.0])),
                                     max_num_seqs=draw(st.sampled_from([2, 4, 8, 32])),
                                     gpu=name)
        offers[name] = Offer(replica, rentable_gpus=CAP)
    tier = Tier("all", 1.0, draw(st.sampled_from([60.0, 150.0, 400.0])),
                draw(st.sampled_from([10.0, 20.0, 40.0])))
    return build_demand(trace, [tier], draw(st.sampled_from([0.8, 0.9, 0.99]))), offers


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.sampled_from(["tandem", "least-loaded"]))
def test_on_small_instances_the_plan_is_the_brute_force_best(instance, policy):
    demand, offers = instance
    best = _brute_force_cost(demand, offers, policy)
    if best is None:
        with pytest.raises(UserError, match="no fleet meets"):
            search_fleets(demand, offers, policy)
        return
    found = search_fleets(demand, offers, policy)
    assert found.best.passes
    assert found.best.cost_per_hour == pytest.approx(best)


def test_with_the_best_type_scarce_the_plan_is_a_mix(catalog, conv_slice):
    tier = [make_tier("all", 1.0, 2000, 100)]
    alone = make_plan(conv_slice, catalog, catalog.model("llama-3.1-8b"), "fp16", tier,
                      rate_scale=30, gpus=["H100", "L4"])
    h100 = alone.homogeneous["H100"].fleet["H100"]
    assert alone.best.cost_per_hour <= alone.homogeneous["H100"].cost_per_hour
    assert h100 >= 2  # the premise: a cap below it bites
    scarce = make_plan(conv_slice, catalog, catalog.model("llama-3.1-8b"), "fp16", tier,
                       rate_scale=30, gpus=["H100", "L4"], available={"H100": h100 - 1})
    assert scarce.best.fleet.get("H100", 0) <= h100 - 1
    assert set(scarce.best.fleet) == {"H100", "L4"}
    assert scarce.best.passes
    assert scarce.best.cost_per_hour < scarce.homogeneous["L4"].cost_per_hour


def test_owned_gpus_are_used_before_rented_ones_of_equal_speed_and_cost_nothing():
    demand = build_demand(make_trace(np.linspace(0, 4, 400), [100] * 400, [20] * 400),
                          [Tier("all", 1.0, 200.0, 40.0)], 0.95)
    replica = fixed_step_replica(0.01, max_num_seqs=4)
    offers = {"rented": Offer(replica), "owned": Offer(replica, owned_gpus=2)}
    found = search_fleets(demand, offers)
    total = sum(found.best.fleet.values())
    assert total > 2  # the premise: more than the owned GPUs are needed
    assert found.best.fleet.get("owned", 0) >= 2  # both owned GPUs in use
    assert found.best.cost_per_hour == pytest.approx(replica.price_per_hour * (total - 2))


def test_each_tier_meets_its_target_in_the_simulator(catalog, conv_slice):
    tiers = [make_tier("chat", 0.3, 300, 30), make_tier("bulk", 0.7, 10_000, 150)]
    plan = make_plan(conv_slice, catalog, catalog.model("llama-3.1-8b"), "fp16", tiers,
                     attainment=0.95, rate_scale=20, gpus=["H100", "L4"])
    demand = plan.demand
    models = {gpu: plan.offers[gpu].replica for gpu in plan.best.fleet}
    replay = simulate(demand.trace, {g: (models[g], n) for g, n in plan.best.fleet.items()},
                      demand.strictest, policy=make_policy("tandem", models, demand),
                      requests=demand.request_features())
    attained = attainment_by_tier(demand.trace, replay, demand.tier_of_request,
                                  {"chat": (300, 30), "bulk": (10_000, 150)})
    assert attained["chat"] >= 0.95 and attained["bulk"] >= 0.95
    assert attained == pytest.approx(plan.best.judgement.by_tier)

from dataclasses import replace

import numpy as np
from planner_helpers import fixed_step_replica, make_trace, queue_replica, queue_trace
from tandem.planner.demand import Tier, build_demand, make_tier
from tandem.planner.fleet import Offer, fleet_cost
from tandem.planner.search import (
    Budget,
    Validator,
    descend,
    fleets_cheaper_than,
    neighbours_below,
    size_homogeneous,
)

TIER = Tier("all", 1.0, 200.0, 40.0)


def _demand(count=120, seconds=6.0, seed=3):
    rng = np.random.default_rng(seed)
    trace = make_trace(np.sort(rng.uniform(0, seconds, count)), rng.integers(10, 400, count),
                       rng.integers(5, 60, count))
    return build_demand(trace, [TIER], 0.95)


def _offers():
    # "slow" is cheap and holds few sequences; "fast" costs more and batches wide
    return {"slow": Offer(fixed_step_replica(0.02, price=1.0, max_num_seqs=4)),
            "fast": Offer(fixed_step_replica(0.01, price=2.5, max_num_seqs=32))}


def test_homogeneous_size_passes_and_one_fewer_fails():
    demand, offers = _demand(), _offers()
    validator = Validator(demand, offers, "tandem")
    fleet = size_homogeneous(Budget(validator), "slow", estimate=1.0)
    count = fleet.fleet["slow"]
    assert fleet.passes
    assert count == 1 or not validator({"slow": count - 1}).passes


def test_a_fleet_failing_only_on_its_growing_queue_is_grown_until_the_queue_holds():
    demand = build_demand(queue_trace(), [make_tier("all", 1.0, 1e6, 1000)], 0.99)
    validator = Validator(demand, {"slow": Offer(queue_replica())}, "tandem")
    fleet = size_homogeneous(Budget(validator), "slow", estimate=1.0)
    assert fleet is not None and fleet.fleet == {"slow": 3} and fleet.passes
    two = validator({"slow": 2}).judgement
    assert two.attained and two.overload  # the premise: only the queue fails two replicas


def test_a_capped_type_that_cannot_pass_within_its_cap_is_none():
    demand, offers = _demand(), _offers()
    offers["slow"] = replace(offers["slow"], rentable_gpus=1)
    validator = Validator(demand, offers, "tandem")
    assert not validator({"slow": 1}).passes  # the premise
    assert size_homogeneous(Budget(validator), "slow", estimate=5.0) is None


def test_descend_stops_where_no_cheaper_neighbour_passes():
    demand, offers = _demand(), _offers()
    validator = Validator(demand, offers, "tandem")
    start = validator({"fast": 3, "slow": 3})
    assert start.passes
    found = descend(Budget(validator), start)
    assert found.passes and found.cost_per_hour <= start.cost_per_hour
    for neighbour in neighbours_below(found.fleet, offers, found.cost_per_hour):
        assert not validator(neighbour).passes


def test_a_search_spends_at_most_its_budget():
    demand, offers = _demand(), _offers()
    validator = Validator(demand, offers, "tandem")
    budget = Budget(validator, limit=2)
    descend(budget, validator({"fast": 4, "slow": 4}))
    assert len(validator.results) == 1 + 2 and budget.left == 0  # the start, then two


def test_neighbours_are_one_step_and_cheaper():
    offers = _offers()
    fleet = {"fast": 2, "slow": 1}
    below = neighbours_below(fleet, offers, fleet_cost(offers, fleet))
    assert {"fast": 1, "slow": 2} in below and {"fast": 2} in below
    assert all(fleet_cost(offers, f) < fleet_cost(offers, fleet) for f in below)
    assert all(sum(abs(f.get(g, 0) - fleet.get(g, 0)) for g in offers) <= 2 for f in below)


def test_fleets_cheaper_than_a_bound_are_all_listed_cheapest_first():
    offers = _offers()
    fleets = fleets_cheaper_than(offers, 5.0, limit=50)
    costs = [fleet_cost(offers, f) for f in fleets]
    assert costs == sorted(costs) and max(costs) < 5.0
    assert {"slow": 4} in fleets and {"fast": 1, "slow": 2} in fleets
    assert len(fleets) == 7  # slow 1-4; fast 1 + slow 0-2; fast 2 would be 5.0
    assert fleets_cheaper_than(offers, 500.0, limit=50) is None
    assert fleets_cheaper_than(offers, float("inf"), limit=50) is None

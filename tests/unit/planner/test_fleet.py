from dataclasses import replace

from planner_helpers import fixed_step_replica
from tandem.planner.fleet import Offer, describe, fleet_cost, gpus_of, owned_in_use


def test_owned_gpus_cost_nothing_and_rented_ones_their_rent():
    tp2 = replace(fixed_step_replica(price=4.0), tp=2)  # $2 per GPU-hour
    offers = {"big": Offer(tp2, owned_gpus=3), "small": Offer(fixed_step_replica(price=1.0))}
    fleet = {"big": 2, "small": 1}
    assert fleet_cost(offers, fleet) == 2.0 + 1.0  # one big GPU rented of four
    assert gpus_of(offers, fleet) == {"big": 4, "small": 1}
    assert owned_in_use(offers, fleet) == {"big": {"owned": 3, "used": 3,
                                                   "would_be_rent_per_hour": 6.0}}
    assert describe(fleet, offers) == "2 x big (TP2: 4 GPUs) + 1 x small"


def test_availability_caps_replicas_owned_included():
    offer = Offer(replace(fixed_step_replica(), tp=2), owned_gpus=2, rentable_gpus=4)
    assert offer.max_replicas == 3 and offer.owned_replicas == 1
    assert offer.allows(3) and not offer.allows(4)
    assert Offer(fixed_step_replica()).allows(10_000)

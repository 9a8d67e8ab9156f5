from collections import Counter

import pytest
from tandem.routing.policy import (
    LeastLoadedPolicy,
    NoHealthyPool,
    RoundRobinPolicy,
    RoutingPolicy,
)
from tandem.routing.types import PoolState, RequestFeatures

REQUEST = RequestFeatures(prompt_tokens=100, max_tokens=50)


def pool(name, replicas=1, in_flight=0, queued=0, healthy=True, price=1.0):
    return PoolState(name=name, gpu=name, healthy=healthy, replicas=replicas,
                     in_flight=in_flight, queued=queued, price_per_hour=price)


def test_policies_satisfy_the_protocol():
    for policy in (RoundRobinPolicy(), LeastLoadedPolicy()):
        assert isinstance(policy, RoutingPolicy)


def test_round_robin_follows_replica_counts_and_skips_unhealthy():
    policy = RoundRobinPolicy()
    pools = [pool("a", replicas=1), pool("b", replicas=3), pool("c", healthy=False)]
    picks = Counter(policy.pick_pool(REQUEST, pools, 0.0).pool for _ in range(40))
    assert picks == {"a": 10, "b": 30}


def test_least_loaded_compares_per_replica_and_breaks_ties_on_price():
    policy = LeastLoadedPolicy()
    pools = [pool("a", replicas=1, in_flight=3), pool("b", replicas=4, in_flight=8)]
    assert policy.pick_pool(REQUEST, pools, 0.0).pool == "b"
    tied = [pool("dear", price=3.0), pool("cheap", price=1.0)]
    assert policy.pick_pool(REQUEST, tied, 0.0).pool == "cheap"


def test_no_healthy_pool_raises():
    with pytest.raises(NoHealthyPool):
        LeastLoadedPolicy().pick_pool(REQUEST, [pool("a", healthy=False)], 0.0)


def test_load_blind_policies_leave_a_cold_pool_alone_while_a_warm_one_is_up():
    warm = PoolState("fast", "cpu", True, 1, 3, 0, 0.4)
    cold = PoolState("cheap", "cpu", True, 1, 0, 0, 0.1, cold_start_ms=60_000.0)
    request = RequestFeatures(8, 8)
    assert LeastLoadedPolicy().pick_pool(request, [warm, cold], 0.0).pool == "fast"
    assert LeastLoadedPolicy().pick_pool(request, [cold], 0.0).pool == "cheap"

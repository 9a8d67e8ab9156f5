from collections import Counter

import pytest
from tandem.routing.policy import (
    LeastLoadedPolicy,
    NoHealthyPool,
    RoundRobinPolicy,
    RoutingPolicy,
    SizeBucketPolicy,
)
from tandem.routing.types import PoolState, RequestFeatures

REQUEST = RequestFeatures(prompt_tokens=100, max_tokens=50)


def pool(name, replicas=1, in_flight=0, queued=0, healthy=True, price=1.0):
    return PoolState(name=name, gpu=name, healthy=healthy, replicas=replicas,
                     in_flight=in_flight, queued=queued, price_per_hour=price)


def test_policies_satisfy_the_protocol():
    for policy in (RoundRobinPolicy(), LeastLoadedPolicy(), SizeBucketPolicy({}, lambda r: 0)):
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


def test_size_buckets_realise_their_shares_and_fall_back_when_down():
    policy = SizeBucketPolicy({0: {"a": 0.25, "b": 0.75}},
                              lambda r: 0 if r.prompt_tokens < 1000 else 1)
    pools = [pool("a"), pool("b")]
    picks = Counter(policy.pick_pool(REQUEST, pools, 0.0).pool for _ in range(100))
    assert picks == {"a": 25, "b": 75}
    down = [pool("a", healthy=False), pool("b")]
    assert policy.pick_pool(REQUEST, down, 0.0).pool == "b"
    big = RequestFeatures(prompt_tokens=5000, max_tokens=10)
    loaded = [pool("a", in_flight=5), pool("b")]
    assert policy.pick_pool(big, loaded, 0.0).reason.startswith("least loaded")

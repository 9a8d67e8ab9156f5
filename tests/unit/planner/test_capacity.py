import math

import numpy as np
import pytest
from planner_helpers import fixed_step_replica, make_trace
from tandem.planner.capacity import (
    PRIOR_FACTOR,
    bucket_demand,
    bucket_index,
    capacity_table,
    fit_capacity,
    replica_capacity,
    steady_state_replicas,
)
from tandem.planner.demand import Tier, build_demand
from tandem.planner.simulator import Slo

SLO = Slo(ttft_ms=2000, tpot_ms=100)


def test_buckets_partition_the_trace_per_tier(conv_slice):
    demand = build_demand(conv_slice, [Tier("a", 0.5, 500, 50), Tier("b", 0.5, 5000, 200)],
                          0.99)
    buckets = bucket_demand(demand)
    assert sum(b.count for b in buckets) == len(conv_slice)
    for tier in ("a", "b"):
        assert sum(b.count for b in buckets if b.tier == tier) \
            == int((demand.tier_of_request == tier).sum())
    assert {b.slo.tpot_ms for b in buckets} == {50, 200}


def test_bucket_index_is_row_major():
    assert bucket_index(1, 1) == 0
    assert bucket_index(129, 1) == 7  # second prompt row, first output column


def test_one_gpu_one_bucket_needs_rate_over_capacity_replicas():
    replica = fixed_step_replica(0.01)
    capacity = replica_capacity(replica, 100, 50, SLO)
    assert capacity.meets_slo and capacity.rate > 0
    trace = make_trace(np.linspace(0, 10, 101), [100] * 101, [50] * 101)
    demand = build_demand(trace, [Tier("all", 1.0, 2000, 100)], 0.99)
    buckets = bucket_demand(demand)
    table = capacity_table(buckets, {"g": replica})
    assert steady_state_replicas(buckets, table, "g") == pytest.approx(
        101 / 10 / capacity.rate)


def test_a_gpu_with_no_throughput_needs_infinitely_many():
    trace = make_trace([0, 1], [5000, 5000], [10, 10])
    demand = build_demand(trace, [Tier("all", 1.0, 2000, 100)], 0.99)
    buckets = bucket_demand(demand)
    tiny = fixed_step_replica(kv_capacity=100, context=8192)
    table = capacity_table(buckets, {"tiny": tiny})
    assert math.isinf(steady_state_replicas(buckets, table, "tiny"))


def test_unfitted_types_take_the_median_of_the_fitted_ones():
    fit = fit_capacity({"a": 1.5, "b": 2.5, "c": 2.0}, ["a", "b", "c", "d"])
    assert fit.factor("d") == 2.0 and fit.factor("a") == 1.5
    assert fit.fitted == {"a", "b", "c"}
    assert fit_capacity({}, ["a"]).factor("a") == PRIOR_FACTOR

import math
from dataclasses import replace

import pytest
from planner_helpers import fixed_step_replica
from tandem.errors import UserError
from tandem.perf import build_replica_model
from tandem.planner.optimizer import (
    Bucket,
    bucket_index,
    bucket_trace,
    replica_capacity,
    require_feasible,
    size_homogeneous,
    solve_mix,
)
from tandem.planner.simulator import Slo, simulate

SLO = Slo(ttft_ms=2000, tpot_ms=100)


def test_buckets_partition_the_trace(conv_slice):
    buckets = bucket_trace(conv_slice)
    assert sum(b.count for b in buckets) == len(conv_slice)
    first = bucket_index(int(conv_slice.prompt_tokens[0]), int(conv_slice.output_tokens[0]))
    assert first in {b.index for b in buckets}


def test_one_gpu_one_bucket_needs_rate_over_capacity_replicas():
    replica = fixed_step_replica(0.01)
    capacity = replica_capacity(replica, 100, 50, SLO)
    assert capacity.meets_slo and capacity.rate > 0
    bucket = Bucket(index=0, count=1, rate=capacity.rate * 3.5, prompt_tokens=100,
                    output_tokens=50)
    mix = solve_mix([bucket], {"g": replica}, SLO, headroom=0.9)
    assert mix.counts == {"g": math.ceil(3.5 / 0.9)}
    assert mix.shares == {0: {"g": pytest.approx(1.0)}}


def test_identical_gpus_go_to_the_cheaper_one():
    cheap, dear = fixed_step_replica(price=1.0), fixed_step_replica(price=2.0)
    bucket = Bucket(index=0, count=1, rate=50.0, prompt_tokens=100, output_tokens=50)
    mix = solve_mix([bucket], {"cheap": cheap, "dear": dear}, SLO, headroom=1.0)
    assert set(mix.counts) == {"cheap"}


def test_each_bucket_goes_where_it_is_cheapest():
    # "slow" is cheap but only meets TPOT for short sequences; "fast" costs 4x
    slow = replace(fixed_step_replica(0.05, price=1.0), mem_per_token=2e-5)
    fast = fixed_step_replica(0.005, price=4.0, max_num_seqs=4)
    small = Bucket(index=0, count=1, rate=200.0, prompt_tokens=50, output_tokens=20)
    large = Bucket(index=1, count=1, rate=5.0, prompt_tokens=4000, output_tokens=500)
    assert not replica_capacity(slow, 4000, 500, SLO).meets_slo
    mix = solve_mix([small, large], {"slow": slow, "fast": fast}, SLO, headroom=1.0)
    assert mix.shares[1] == {"fast": pytest.approx(1.0)}
    assert mix.shares[0]["slow"] >= 0.8  # spare room on "fast" may take a sliver
    assert mix.counts["slow"] >= 1


def test_homogeneous_size_is_the_fewest_that_meet_the_target(catalog, conv_slice):
    replica = build_replica_model(catalog, "A100-80G", catalog.model("llama-3.1-8b"), "fp16")
    trace = conv_slice.scaled(40)
    slo = Slo(ttft_ms=1000, tpot_ms=60, attainment=0.95)
    fleet = size_homogeneous(trace, replica, "A100-80G", slo)
    count = fleet.counts["A100-80G"]
    assert fleet.simulation.slo_attainment >= 0.95
    if count > 1:
        assert simulate(trace, {"A": (replica, count - 1)}, slo).slo_attainment < 0.95


def test_no_feasible_fleet_is_a_user_error():
    with pytest.raises(UserError, match="no fleet meets"):
        require_feasible(None, {"H100": None}, SLO)

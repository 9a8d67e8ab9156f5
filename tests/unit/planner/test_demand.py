import math

import numpy as np
import pytest
from planner_helpers import fixed_step_replica, make_trace, queue_replica, queue_trace
from tandem.errors import UserError
from tandem.planner.demand import MAX_WAIT_S, Tier, build_demand, judge, make_tier, parse_tier
from tandem.planner.simulator import simulate
from tandem.planner.trace import Trace


def test_a_tier_flag_parses_into_targets_and_a_share():
    tier = parse_tier("chat:share=0.6,ttft_ms=400,tpot_ms=40")
    assert tier == Tier("chat", 0.6, 400.0, 40.0)
    tpot_only = parse_tier("bulk:share=0.4,tpot_ms=200")
    assert math.isinf(tpot_only.ttft_ms) and tpot_only.describe() == "TPOT <= 200 ms"


@pytest.mark.parametrize("text, message", [
    ("chat:share=0.6", "no targets"),
    ("chat:ttft_ms=400", "share is required"),
    ("chat:share=0.6,ttft_ms=-1", "positive"),
    ("chat:share=0.6,speed=3", "unknown field"),
    ("chat:share=x,ttft_ms=3", "not a number"),
    ("nocolon", "expected NAME"),
])
def test_bad_tier_flags_name_the_problem(text, message):
    with pytest.raises(UserError, match=message):
        parse_tier(text)


def test_shares_must_sum_to_one(conv_slice):
    with pytest.raises(UserError, match="sum to 0.9"):
        build_demand(conv_slice, [Tier("a", 0.5, 100, 10), Tier("b", 0.4, 100, 10)], 0.99)
    demand = build_demand(conv_slice, [Tier("a", 0.25, 100, 10), Tier("b", 0.75, 100, 10)],
                          0.99)
    assert abs((demand.tier_of_request == "a").mean() - 0.25) < 0.06


def test_the_traces_tier_column_overrides_the_shares():
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.array([10, 10, 10]), np.array([5, 5, 5]),
                  tiers=np.array(["a", "a", "b"]))
    demand = build_demand(trace, [Tier("a", 0.1, 100, 10), Tier("b", 0.1, 100, 10)], 0.99)
    assert demand.tier_of_request.tolist() == ["a", "a", "b"]
    with pytest.raises(UserError, match="no --tier targets"):
        build_demand(trace, [Tier("a", 1.0, 100, 10)], 0.99)


def test_each_tier_is_judged_against_its_own_targets():
    trace = make_trace([0, 0.5], [10, 10], [11, 11])
    trace = Trace(trace.arrival_s, trace.prompt_tokens, trace.output_tokens,
                  tiers=np.array(["tight", "loose"]))
    replica = fixed_step_replica(0.01)  # TTFT 10 ms, TPOT 10 ms
    demand = build_demand(trace, [make_tier("tight", 0.5, 5, None),
                                  make_tier("loose", 0.5, None, 20)], 0.99)
    verdict = judge(demand, simulate(trace, {"g": (replica, 1)}, demand.strictest))
    assert verdict.by_tier == {"tight": 0.0, "loose": 1.0}
    assert not verdict.passes and verdict.overall == 0.5


def test_a_tier_without_a_ttft_target_fails_when_its_ttft_exceeds_the_wait_bound():
    trace = make_trace([0.0], [10], [3])
    untargeted = [make_tier("all", 1.0, None, 5000)]
    assert build_demand(trace, untargeted, 0.99).max_wait_s == MAX_WAIT_S == 30
    demand = build_demand(trace, untargeted, 0.99, max_wait_s=1)
    result = simulate(trace, {"g": (fixed_step_replica(2.0), 1)}, demand.strictest)  # TTFT 2 s
    over = judge(demand, result)
    assert over.by_tier == {"all": 0.0} and not over.passes
    assert over.overload is None  # the bound failed it, not the queue
    assert judge(build_demand(trace, untargeted, 0.99, max_wait_s=3), result).passes
    targeted = [make_tier("all", 1.0, 5000, 5000)]  # its own TTFT target, not the bound
    assert judge(build_demand(trace, targeted, 0.99, max_wait_s=1), result).passes


def test_a_growing_queue_fails_even_when_every_target_is_met():
    trace = queue_trace()
    demand = build_demand(trace, [make_tier("all", 1.0, 1e6, 1000)], 0.99)
    one_at_a_time = judge(demand, simulate(trace, {"slow": (queue_replica(), 1)},
                                           demand.strictest))
    assert one_at_a_time.by_tier == {"all": 1.0} and one_at_a_time.attained
    assert not one_at_a_time.passes
    assert one_at_a_time.overload == ("queue grows: mean wait 18.6 s in the last tenth vs "
                                      "0.6 s in the first")
    batched = judge(demand, simulate(trace, {"slow": (queue_replica(max_num_seqs=32), 1)},
                                     demand.strictest))
    assert batched.passes and batched.overload is None


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_the_wait_bound_must_be_a_positive_number(seconds):
    with pytest.raises(UserError, match="--max-wait-s must be a positive number"):
        build_demand(make_trace([0.0], [10], [3]), [make_tier("all", 1.0, None, 50)], 0.99,
                     max_wait_s=seconds)

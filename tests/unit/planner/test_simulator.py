import numpy as np
import pytest
from planner_helpers import fixed_step_replica, make_trace, queue_replica, queue_trace
from tandem.perf import build_replica_model
from tandem.planner.simulator import Slo, simulate
from tandem.routing.types import Decision

SLO = Slo(ttft_ms=1000, tpot_ms=100)


def test_single_request_by_hand():
    trace = make_trace([0.0], [10], [5])
    result = simulate(trace, {"p": (fixed_step_replica(0.01), 1)}, SLO)
    # prefill iteration 0..10 ms gives token 1; four decode iterations end at 50 ms
    assert result.first_token_s[0] == pytest.approx(0.01)
    assert result.finish_s[0] == pytest.approx(0.05)
    assert result.ttft_ms["p50"] == pytest.approx(10)
    assert result.tpot_ms["p50"] == pytest.approx(10)


def test_late_arrival_joins_at_the_next_iteration_boundary():
    trace = make_trace([0.0, 0.025], [10, 10], [5, 3])
    result = simulate(trace, {"p": (fixed_step_replica(0.01), 1)}, SLO)
    # request 1 arrives mid-iteration (20-30 ms), is prefilled 30-40 ms, decodes 2 more
    assert result.first_token_s[1] == pytest.approx(0.04)
    assert result.finish_s[1] == pytest.approx(0.06)
    assert result.finish_s[0] == pytest.approx(0.05)  # its 4th token rode the prefill


def test_kv_capacity_makes_requests_wait():
    trace = make_trace([0.0, 0.0], [50, 50], [10, 10])
    result = simulate(trace, {"p": (fixed_step_replica(0.01, kv_capacity=100), 1)}, SLO)
    assert result.first_token_s[1] == pytest.approx(result.finish_s[0] + 0.01)


def test_every_request_finishes_once_and_in_order(catalog, conv_slice):
    replica = build_replica_model(catalog, "H100", catalog.model("llama-3.1-8b"), "fp16")
    result = simulate(conv_slice.scaled(20), {"H100": (replica, 2)}, SLO)
    assert result.served + result.rejected == len(conv_slice)
    served = result.pool_of_request >= 0
    arrival = conv_slice.scaled(20).arrival_s
    assert np.all(result.first_token_s[served] > arrival[served])
    assert np.all(result.finish_s[served] >= result.first_token_s[served])
    assert sum(pool.requests for pool in result.pools) == result.served
    assert 0 < result.pools[0].utilization <= 1


def test_requests_beyond_the_context_are_rejected_apart(catalog):
    trace = make_trace([0.0, 0.1, 0.2], [100, 5000, 100], [10, 10, 10])
    result = simulate(trace, {"p": (fixed_step_replica(context=4096), 1)}, SLO)
    assert result.rejected == 1 and result.served == 2
    assert result.pool_of_request[1] == -1


def test_more_replicas_never_hurt(catalog, conv_slice):
    replica = build_replica_model(catalog, "A100-80G", catalog.model("llama-3.1-8b"), "fp16")
    trace = conv_slice.scaled(40)
    few = simulate(trace, {"A100": (replica, 1)}, SLO)
    many = simulate(trace, {"A100": (replica, 4)}, SLO)
    assert many.slo_attainment >= few.slo_attainment
    assert many.ttft_ms["p99"] < few.ttft_ms["p99"]
    assert many.cost_per_hour == pytest.approx(4 * few.cost_per_hour)


def test_the_routing_policy_is_pluggable():
    class Always:
        def __init__(self, pool):
            self.pool, self.seen = pool, 0

        def pick_pool(self, request, pools, now):
            self.seen += 1
            assert {p.name for p in pools} == {"a", "b"}
            return Decision(pool=self.pool, reason="test")

    trace = make_trace([0.0, 0.1, 0.2], [10, 10, 10], [3, 3, 3])
    policy = Always("b")
    pools = {"a": (fixed_step_replica(), 1), "b": (fixed_step_replica(), 2)}
    result = simulate(trace, pools, SLO, policy=policy)
    assert policy.seen == 3
    assert [p.requests for p in result.pools] == [0, 3]


def test_attainment_by_tier_judges_each_tier_against_its_own_targets():
    from tandem.planner.simulator import attainment_by_tier

    # the same two requests, by hand as above: TTFT 10 ms and 20 ms (the second waited),
    # TPOT 10 ms each
    trace = make_trace([0.0, 0.0], [10, 10], [5, 5])
    result = simulate(trace, {"p": (fixed_step_replica(0.01), 1)}, SLO)
    ttft = (result.first_token_s - trace.arrival_s) * 1e3
    assert ttft[0] < 15 < ttft[1]
    strict = attainment_by_tier(trace, result, ["chat", "chat"], {"chat": (15.0, 50.0)})
    assert strict == {"chat": 0.5}
    split = attainment_by_tier(trace, result, ["chat", "batch"],
                               {"chat": (15.0, 50.0), "batch": (15.0, 50.0), "none": (1, 1)})
    assert split["chat"] == 1.0 and split["batch"] == 0.0 and np.isnan(split["none"])


def test_engines_report_their_step_and_a_learning_policy_hears_of_waits():
    class Learning:
        def __init__(self):
            self.steps, self.waits = [], []

        def pick_pool(self, request, pools, now):
            self.steps.append(pools[0].engine_step_ms)
            return Decision(pool="p", reason="test")

        def observe(self, pool, request, now, *, ttft_ms=None, tpot_ms=None):
            pass

        def observe_waiting(self, pool, request, now, waited_ms):
            self.waits.append(waited_ms)

    policy = Learning()
    simulate(queue_trace(), {"p": (queue_replica(), 1)}, SLO, policy=policy)
    assert policy.steps[0] is None  # nothing decoded yet
    assert policy.steps[-1] == pytest.approx(100)  # every iteration takes 0.1 s
    # request 1 waits for request 0's 1.1 s: each arrival hears how long it has waited
    assert policy.waits[:3] == pytest.approx([100, 200, 300])

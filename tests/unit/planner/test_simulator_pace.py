"""The simulated truth departs from the replica models exactly as a `Pace` says.

By hand on `fixed_step_replica(0.01)` (every iteration 10 ms): a request of 5 tokens
alone has its first token after one iteration and finishes after five.
"""

import numpy as np
import pytest
from planner_helpers import fixed_step_replica, make_trace
from tandem.perf import build_replica_model
from tandem.planner.simulator import Pace, Slo, Slowdown, paced, simulate

SLO = Slo(ttft_ms=1000, tpot_ms=100)
ONE = {"p": (fixed_step_replica(0.01), 1)}


def test_an_efficiency_of_one_half_doubles_every_iteration():
    trace = make_trace([0.0], [10], [5])
    result = simulate(trace, ONE, SLO, pace=Pace(efficiency={"p": 0.5}))
    assert result.first_token_s[0] == pytest.approx(0.02)
    assert result.finish_s[0] == pytest.approx(0.10)
    other = simulate(trace, ONE, SLO, pace=Pace(efficiency={"elsewhere": 0.5}))
    assert other.finish_s[0] == pytest.approx(0.05)


def test_the_slowdown_halves_speed_only_inside_its_window():
    trace = make_trace([0.0, 1.0, 2.0], [10, 10, 10], [5, 5, 5])
    pace = Pace(slowdowns=[Slowdown("p", start_s=0.9, end_s=1.5, speed=0.5)])
    result = simulate(trace, ONE, SLO, pace=pace)
    took = result.finish_s - trace.arrival_s
    assert took == pytest.approx([0.05, 0.10, 0.05])
    assert result.first_token_s[1] - 1.0 == pytest.approx(0.02)


def test_service_noise_scales_a_lone_request_and_averages_over_a_batch():
    lone = simulate(make_trace([0.0], [10], [5]), ONE, SLO, pace=Pace(noise=[2.0]))
    assert lone.first_token_s[0] == pytest.approx(0.02)
    assert lone.finish_s[0] == pytest.approx(0.10)
    # a (draw 1) is prefilled alone, 0-10 ms; b's prefill (draw 3) takes 30 ms; together
    # they decode at the mean draw, 20 ms a step, until a's 5th token at 100 ms; b's last
    # step, alone again, takes 30 ms
    pair = simulate(make_trace([0.0, 0.0], [10, 10], [5, 5]), ONE, SLO,
                    pace=Pace(noise=[1.0, 3.0]))
    assert pair.first_token_s == pytest.approx([0.01, 0.04])
    assert pair.finish_s == pytest.approx([0.10, 0.13])
    with pytest.raises(ValueError, match="noise draws"):
        simulate(make_trace([0.0], [10], [5]), ONE, SLO, pace=Pace(noise=[1.0, 1.0]))


def test_a_paced_model_is_what_the_simulator_runs_at_that_speed(catalog, conv_slice):
    """What an oracle is given (`paced`) matches the truth a noiseless `Pace` simulates."""
    replica = build_replica_model(catalog, "A100-80G", catalog.model("llama-3.1-8b"), "fp16")
    trace = conv_slice.scaled(20)
    truth = simulate(trace, {"A100": (replica, 2)}, SLO, pace=Pace(efficiency={"A100": 0.7}))
    model = simulate(trace, {"A100": (paced(replica, 0.7), 2)}, SLO)
    assert np.allclose(truth.finish_s, model.finish_s, rtol=1e-9, equal_nan=True)
    assert np.allclose(truth.first_token_s, model.first_token_s, rtol=1e-9, equal_nan=True)
    as_modelled = simulate(trace, {"A100": (replica, 2)}, SLO)
    assert np.nanmean(truth.finish_s - trace.arrival_s) > 1.2 * np.nanmean(
        as_modelled.finish_s - trace.arrival_s)


def test_an_empty_pace_is_the_model_exactly(catalog, conv_slice):
    replica = build_replica_model(catalog, "H100", catalog.model("llama-3.1-8b"), "fp16")
    trace = conv_slice.scaled(20)
    plain = simulate(trace, {"H100": (replica, 1)}, SLO)
    empty = simulate(trace, {"H100": (replica, 1)}, SLO, pace=Pace(noise=np.ones(len(trace))))
    assert np.array_equal(plain.finish_s, empty.finish_s, equal_nan=True)

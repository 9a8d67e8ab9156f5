"""SLO outcomes are judged from measurements, whatever the router predicted."""

from __future__ import annotations

from tandem.routing.outcome import slo_met


def test_a_streamed_request_meets_its_targets_only_when_ttft_and_tpot_both_do():
    judge = dict(status=200, stream=True, ttft_target_ms=50.0, tpot_target_ms=10.0,
                 e2e_ms=0.0, completion_tokens=8)
    assert slo_met(**judge, ttft_ms=49.0, tpot_ms=9.0) is True
    assert slo_met(**judge, ttft_ms=71.0, tpot_ms=9.0) is False
    assert slo_met(**judge, ttft_ms=20.0, tpot_ms=12.0) is False
    assert slo_met(**judge, ttft_ms=20.0, tpot_ms=None) is True  # one token: no TPOT
    assert slo_met(**judge, ttft_ms=None, tpot_ms=None) is False  # no first token seen


def test_a_whole_response_is_judged_on_its_end_to_end_time():
    judge = dict(status=200, stream=False, ttft_target_ms=50.0, tpot_target_ms=10.0,
                 ttft_ms=None, tpot_ms=None, completion_tokens=11)
    assert slo_met(**judge, e2e_ms=150.0) is True  # 50 + 10 x (11 - 1)
    assert slo_met(**judge, e2e_ms=150.1) is False


def test_no_target_or_no_success_is_not_judged():
    assert slo_met(200, True, None, None, 10.0, 1.0, 20.0, 8) is None
    for status in (400, 429, 499, 502, 503):
        assert slo_met(status, True, 50.0, 10.0, 10.0, 1.0, 20.0, 8) is None


def test_ttft_calibration_skips_each_pools_first_requests_and_takes_medians():
    from tandem.routing.outcome import ttft_calibration

    rows = [{"pool": "fast", "predicted_ttft_ms": 10.0, "ttft_ms": 100.0}] * 3  # learning
    rows += [{"pool": "fast", "predicted_ttft_ms": p, "ttft_ms": 50.0} for p in (40, 55, 75)]
    rows += [{"pool": "cheap", "predicted_ttft_ms": 30.0, "ttft_ms": None},  # not streamed
             {"pool": None, "predicted_ttft_ms": None, "ttft_ms": 20.0}]  # a 400
    calibration = ttft_calibration(rows, skip_first=3)
    assert list(calibration) == ["fast"]
    fast = calibration["fast"]
    assert fast.requests == 3 and fast.median_error == 0.2  # errors 0.2, 0.1, 0.5
    assert (fast.predicted_p50_ms, fast.measured_p50_ms) == (55.0, 50.0)


def test_ttft_calibration_reports_how_far_the_measurements_spread():
    from tandem.routing.outcome import format_calibration, ttft_calibration

    rows = [{"pool": "cheap", "predicted_ttft_ms": 30.0, "ttft_ms": m} for m in (20, 25, 40)]
    cheap = ttft_calibration(rows, skip_first=0)["cheap"]
    # always predicting the median (25) errs 0.25, 0, 0.375: median 0.25
    assert cheap.constant_error == 0.25
    assert "25.0%" in format_calibration({"cheap": cheap}, 0)

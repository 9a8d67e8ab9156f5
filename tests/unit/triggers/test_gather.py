import json

import pytest
from tandem.telemetry.feedback import Feedback, FeedbackStore
from tandem.telemetry.request_log import RequestLog
from tandem.triggers.gather import DRIFT_SAMPLE, Baseline, gather_window
from tandem.triggers.policies import NewLabelsConfig, NewLabelsTrigger, QualityTrigger
from tandem.triggers.profile import DataProfile
from tandem.triggers.state import TriggerState
from tandem.watch.tail import TelemetryTail

from .tables import NOW, feedback, feedback_table, request, requests_table

HOUR = 3600.0


def gather(requests, feedback_rows, **overrides):
    options = dict(model="tandem-tiny", version=3, now=NOW, window_s=HOUR, last_n=50,
                   baseline=None, profile=None, scale="-1..1", slo_miss_target=0.05,
                   cost_target_usd=None)
    options.update(overrides)
    return gather_window(requests, feedback_rows, **options)


def test_scores_are_the_champions_ratings_in_the_window_normalized_oldest_first():
    requests = requests_table(
        request("a", 600), request("b", 500), request("c", 400),
        request("old", 2 * HOUR),
        request("v2", 300, model_version=2),
        request("other", 200, model="other-model"))
    rows = feedback_table(
        feedback("a", 590, 5.0), feedback("b", 480, 1.0), feedback("c", 390, 3.0),
        feedback("old", 2 * HOUR - 10, 5.0), feedback("v2", 290, 1.0),
        feedback("other", 190, 1.0))
    window = gather(requests, rows, scale="1..5")
    assert window.scores == (1.0, -1.0, 0.0)
    assert (window.model, window.model_version) == ("tandem-tiny", 3)


def test_the_latest_feedback_on_a_request_counts_and_last_n_caps_the_scores():
    requests = requests_table(*(request(f"r{i}", 1000 - i) for i in range(5)))
    rows = feedback_table(*(feedback(f"r{i}", 900 - i, 1.0) for i in range(5)),
                          feedback("r0", 100, -1.0))
    window = gather(requests, rows, last_n=3)
    assert window.scores == (1.0, 1.0, -1.0)  # r3, r4, then r0 re-rated last


def test_feedback_after_now_is_not_seen():
    rows = feedback_table(feedback("a", -10, -1.0))
    assert gather(requests_table(request("a", 60)), rows).scores == ()


def test_baseline_is_derived_from_the_earliest_ratings_before_the_recent_ones():
    requests = requests_table(*(request(f"early{i}", 3 * HOUR + i) for i in range(4)),
                              *(request(f"late{i}", 600 - i) for i in range(2)))
    rows = feedback_table(*(feedback(f"early{i}", 3 * HOUR + i - 5, s)
                            for i, s in enumerate([1.0, 1.0, 1.0, -1.0])),
                          *(feedback(f"late{i}", 590 - i, -1.0) for i in range(2)))
    window = gather(requests, rows, last_n=3)
    assert window.scores == (-1.0, -1.0)
    # the earliest three not in the window: early3, early2, early1 by feedback time
    assert window.baseline_mean_score == pytest.approx(1 / 3)
    assert window.baseline_negative_rate == pytest.approx(1 / 3)


def test_no_earlier_ratings_means_no_baseline_and_a_given_baseline_is_used_as_is():
    requests = requests_table(request("a", 60))
    rows = feedback_table(feedback("a", 50, -1.0))
    window = gather(requests, rows)
    assert window.baseline_mean_score is None and window.baseline_negative_rate is None
    given = gather(requests, rows, baseline=Baseline(mean_score=0.8, negative_rate=0.05))
    assert (given.baseline_mean_score, given.baseline_negative_rate) == (0.8, 0.05)


def test_feedback_on_a_request_missing_from_the_table_uses_the_stored_copy():
    rows = feedback_table(feedback("gone", 100, -1.0, "fipo", model="tandem-tiny",
                                   model_version=3, prompt="translate: red =>"))
    window = gather(requests_table(), rows)
    assert window.scores == (-1.0,)


def test_traffic_measures_cover_the_models_answered_requests_in_the_window():
    chat = json.dumps([{"role": "user", "content": "translate: storm moon"}])
    requests = requests_table(
        request("ok", 100, cost_usd=2e-6, slo_met=False),  # predicted to meet, measured a miss
        request("miss", 90, cost_usd=4e-6,
                routing_reason="no pool meets TTFT<=500ms TPOT<=50ms: fastest",
                predicted_slo_miss=True, slo_met=True),  # predicted to miss, measured in time
        request("saturated", 80, cost_usd=6e-6, model_version=2,
                routing_reason="all pools saturated; no pool meets TTFT<=5ms TPOT<=5ms: fastest",
                predicted_slo_miss=True, slo_met=False),
        request("budget", 70, cost_usd=8e-6, prompt=chat,
                routing_reason="batch tier budget reached ($2.00/h >= $1.00/h): cheapest pool",
                predicted_slo_miss=True, slo_met=None),  # not judged
        request("capped", 60, cost_usd=1e-5, prompt=None,
                routing_reason="no pool within max cost $1e-09: cheapest"),
        request("error", 50, status=503, cost_usd=0.0, slo_met=None),
        request("stale", 2 * HOUR), request("other", 40, model="other-model"))
    window = gather(requests, feedback_table(), cost_target_usd=1e-5)
    assert window.requests == 5
    assert (window.slo_judged, window.slo_misses) == (4, 2)  # outcomes, not predictions
    assert window.cost_per_request_usd == pytest.approx(6e-6)
    assert window.prompts == ("translate: ok =>", "translate: miss =>",
                              "translate: saturated =>", "translate: storm moon")
    assert (window.slo_miss_target, window.cost_target_usd) == (0.05, 1e-5)


def test_an_empty_log_gives_an_empty_window():
    profile = DataProfile.build(["translate: red cat =>"])
    window = gather(requests_table(), feedback_table(), profile=profile)
    assert window.requests == 0 and window.cost_per_request_usd is None
    assert window.scores == () and window.prompts == () and window.profile is profile
    assert QualityTrigger().evaluate(window, TriggerState(), NOW).action == "none"


def test_a_window_gathered_through_the_loops_tail_fires_new_labels(tmp_path):
    tail = TelemetryTail(tmp_path, "tandem-tiny", tmp_path / "tail.json", window_s=HOUR,
                         last_n=50, now=NOW)
    log = RequestLog(tmp_path, clock=lambda: NOW)
    store = FeedbackStore(tmp_path, clock=lambda: NOW - 10)
    try:
        for index in range(3):
            record = request(f"r{index}", 100 + index)
            log.append(record)
            store.add(Feedback(f"r{index}", -1.0, "fipo"), record)
        log.flush()
    finally:
        log.close()
    tail.advance(NOW)
    window = gather(tail.window, tail.ratings(), corrections_since_training=tail.corrections_since(None))
    assert window.requests == 3 and window.corrections_since_training == 3
    result = NewLabelsTrigger(NewLabelsConfig(min_corrections=3)).evaluate(window, TriggerState(), NOW)
    assert result.fired and result.reason == "3 corrections since the last training run (threshold 3)"


def test_drift_is_judged_on_an_even_sample_of_a_large_windows_prompts():
    rows = [request(f"r{index}", 3000 - index * 3000 / (2 * DRIFT_SAMPLE + 10))
            for index in range(2 * DRIFT_SAMPLE + 10)]
    window = gather(requests_table(*rows), feedback_table())
    assert window.requests == len(rows)
    assert DRIFT_SAMPLE // 2 < len(window.prompts) <= DRIFT_SAMPLE
    assert window.prompts[0] == "translate: r0 =>"


def test_answers_since_the_last_distillation_are_the_running_count_given():
    assert gather(requests_table(), feedback_table(),
                  answers_since_distillation=7).answers_since_distillation == 7

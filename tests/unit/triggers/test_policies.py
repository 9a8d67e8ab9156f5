import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from tandem.triggers.policies import (
    DriftConfig,
    DriftTrigger,
    LatencyCostAlert,
    LatencyCostConfig,
    NewLabelsConfig,
    NewLabelsTrigger,
    QualityConfig,
    QualityTrigger,
    TriggerWindow,
)
from tandem.triggers.profile import DataProfile
from tandem.triggers.state import TriggerState

from .helpers import BASE, DRIFTED

NOW = 1_740_000_000.0
HOUR = 3600.0


def rated(negative: int, total: int) -> tuple[float, ...]:
    return (-1.0,) * negative + (1.0,) * (total - negative)


def window(**fields) -> TriggerWindow:
    return TriggerWindow(model="tandem-tiny", model_version=3, **fields)


def test_quality_fires_on_a_rise_in_negative_feedback():
    result = QualityTrigger().evaluate(
        window(scores=rated(21, 50), baseline_negative_rate=0.10), TriggerState(), NOW)
    assert result.fired and result.action == "retrain" and result.name == "quality"
    assert result.reason == "negative feedback 42% over last 50 rated vs baseline 10% (threshold +20 pts)"
    assert result.window_id == f"quality@{int(NOW // HOUR)}"


def test_quality_fires_on_a_drop_in_mean_score_over_the_last_n():
    scores = (1.0,) * 100 + (0.2,) * 50
    result = QualityTrigger().evaluate(window(scores=scores, baseline_mean_score=0.6), TriggerState(), NOW)
    assert result.fired
    assert result.reason == "mean score +0.20 over last 50 rated vs baseline +0.60 (threshold -0.3)"


def test_quality_stays_quiet_on_a_normal_window():
    result = QualityTrigger().evaluate(
        window(scores=rated(6, 50), baseline_negative_rate=0.10, baseline_mean_score=0.8),
        TriggerState(), NOW)
    assert not result.fired and result.action == "none"
    assert result.reason.startswith("negative feedback 12% over last 50 rated vs baseline 10%")
    assert "mean score +0.76" in result.reason


def test_quality_needs_min_rated_and_a_baseline():
    trigger = QualityTrigger(QualityConfig(min_rated=20))
    few = trigger.evaluate(window(scores=rated(19, 19), baseline_negative_rate=0.0), TriggerState(), NOW)
    assert not few.fired and few.reason == "only 19 rated requests (need 20)"
    blind = trigger.evaluate(window(scores=rated(30, 30)), TriggerState(), NOW)
    assert not blind.fired and "no baseline" in blind.reason


def test_cooldown_keeps_a_trigger_quiet_until_it_ends():
    trigger = QualityTrigger(QualityConfig(cooldown_s=6 * HOUR))
    bad = window(scores=rated(40, 50), baseline_negative_rate=0.1)
    state = TriggerState()
    assert trigger.evaluate(bad, state, NOW).fired
    assert state.last_fired("quality") == NOW
    again = trigger.evaluate(bad, state, NOW + 5 * HOUR)
    assert not again.fired and again.action == "none" and "cooling down until" in again.reason
    assert state.last_fired("quality") == NOW
    assert trigger.evaluate(bad, state, NOW + 6 * HOUR).fired


def test_cooldown_is_per_trigger():
    state = TriggerState()
    assert NewLabelsTrigger(NewLabelsConfig(min_corrections=5)).evaluate(
        window(corrections_since_training=5), state, NOW).fired
    assert QualityTrigger().evaluate(
        window(scores=rated(40, 50), baseline_negative_rate=0.1), state, NOW).fired


def test_drift_fires_when_prompts_move_away_from_the_training_profile():
    profile = DataProfile.build(BASE * 20)
    trigger = DriftTrigger(DriftConfig(min_requests=50))
    drifted = trigger.evaluate(window(profile=profile, prompts=tuple(DRIFTED * 10)), TriggerState(), NOW)
    assert drifted.fired and drifted.action == "retrain"
    assert drifted.reason.startswith("prompt drift: prompt PSI length ")
    assert "over 80 requests vs training data (threshold 0.2)" in drifted.reason
    normal = trigger.evaluate(window(profile=profile, prompts=tuple(BASE * 5)), TriggerState(), NOW)
    assert not normal.fired and normal.reason.startswith("prompt PSI length 0.00, tokens 0.00")


def test_drift_needs_min_requests_and_a_profile():
    trigger = DriftTrigger()
    few = trigger.evaluate(window(profile=DataProfile.build(BASE), prompts=tuple(DRIFTED)),
                           TriggerState(), NOW)
    assert not few.fired and few.reason == "only 8 recent prompts (need 200)"
    assert "no training data profile" in trigger.evaluate(window(), TriggerState(), NOW).reason


def test_new_labels_fire_at_k_corrections():
    trigger = NewLabelsTrigger(NewLabelsConfig(min_corrections=100))
    quiet = trigger.evaluate(window(corrections_since_training=99), TriggerState(), NOW)
    assert not quiet.fired and quiet.reason == "99 corrections since the last training run (threshold 100)"
    assert trigger.evaluate(window(corrections_since_training=100), TriggerState(), NOW).fired


def test_latency_cost_only_ever_alerts():
    alert = LatencyCostAlert()
    slow = alert.evaluate(window(requests=500, slo_judged=400, slo_misses=60, slo_miss_target=0.05),
                          TriggerState(), NOW)
    assert slow.fired and slow.action == "alert"
    assert slow.reason == ("SLO misses 15.0% of 400 requests judged vs target 5.0%; "
                           "run `tandem plan` to size the GPU mix")
    costly = alert.evaluate(window(requests=500, cost_per_request_usd=2e-4, cost_target_usd=1e-4),
                            TriggerState(), NOW)
    assert costly.fired and costly.action == "alert" and "cost $0.000200 per request" in costly.reason
    fine = alert.evaluate(window(requests=500, slo_judged=500, slo_misses=10, slo_miss_target=0.05,
                                 cost_per_request_usd=5e-5, cost_target_usd=1e-4), TriggerState(), NOW)
    assert not fine.fired and fine.action == "none"
    few = alert.evaluate(window(requests=10, slo_judged=10, slo_misses=10, slo_miss_target=0.05),
                         TriggerState(), NOW)
    assert not few.fired
    assert alert.evaluate(window(requests=500), TriggerState(), NOW).reason == "no latency or cost target set"


def test_window_id_changes_with_the_window():
    trigger = NewLabelsTrigger(NewLabelsConfig(min_corrections=1, cooldown_s=0, window_s=HOUR))
    first = trigger.evaluate(window(corrections_since_training=1), TriggerState(), 10 * HOUR + 1)
    second = trigger.evaluate(window(corrections_since_training=1), TriggerState(), 11 * HOUR)
    assert (first.window_id, second.window_id) == ("new_labels@10", "new_labels@11")


def test_configs_are_strict():
    with pytest.raises(ValidationError):
        QualityConfig(mean_drop="0.3")
    with pytest.raises(ValidationError):
        DriftConfig(psi=0.3)
    with pytest.raises(ValidationError):
        LatencyCostConfig(min_requests=0)


@given(st.lists(st.floats(-1, 1), min_size=20, max_size=80), st.floats(0, 1))
def test_quality_never_fires_when_feedback_is_no_worse_than_baseline(scores, baseline_rate):
    rate = sum(score < 0 for score in scores[-50:]) / len(scores[-50:])
    mean = sum(scores[-50:]) / len(scores[-50:])
    result = QualityTrigger().evaluate(
        window(scores=tuple(scores), baseline_negative_rate=max(rate, baseline_rate),
               baseline_mean_score=min(mean, 1.0)), TriggerState(), NOW)
    assert not result.fired

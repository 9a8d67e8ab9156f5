"""The three gates as plain functions: offline scores, canary traffic, after promotion."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tandem.rollout.verdicts import (
    LiveStats,
    OfflineScores,
    RolloutConfig,
    judge_canary,
    judge_offline,
    judge_promoted,
)

CONFIG = RolloutConfig(min_gain=0.05, max_holdout_drop=0.05, canary_min_requests=20,
                       canary_max_s=600, max_error_rate_increase=0.02, max_score_drop=0.2,
                       min_rated=5, watch_promoted_s=300)
CHAMPION = OfflineScores(holdout=0.90, feedback=0.10, feedback_rows=20)


def test_a_challenger_that_learned_the_new_slice_goes_to_canary():
    verdict = judge_offline(CHAMPION, OfflineScores(0.88, 0.70, 20), CONFIG)
    assert verdict.action == "canary"
    assert "feedback holdout exact match 0.100 -> 0.700" in verdict.reason


def test_a_challenger_that_forgot_the_old_slice_is_rejected_whatever_it_gained():
    verdict = judge_offline(CHAMPION, OfflineScores(0.80, 1.0, 20), CONFIG)
    assert verdict.action == "reject" and "holdout exact match fell 0.900 -> 0.800" in verdict.reason


def test_a_gain_below_the_margin_is_rejected():
    verdict = judge_offline(CHAMPION, OfflineScores(0.90, 0.14, 20), CONFIG)
    assert verdict.action == "reject" and "below 0.05" in verdict.reason


def test_without_held_out_corrections_the_holdout_must_improve():
    assert judge_offline(OfflineScores(0.5, None), OfflineScores(0.6, None), CONFIG).action == "canary"
    assert judge_offline(OfflineScores(0.5, None), OfflineScores(0.52, None), CONFIG).action == "reject"


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_offline_verdict_is_monotonic_in_the_challengers_scores(holdout, feedback, more_h, more_f):
    """Scoring higher on either set never turns a canary into a rejection."""
    champion = OfflineScores(0.5, 0.5)
    worse = OfflineScores(holdout, feedback)
    better = OfflineScores(min(1.0, holdout + more_h), min(1.0, feedback + more_f))
    if judge_offline(champion, worse, CONFIG).action == "canary":
        assert judge_offline(champion, better, CONFIG).action == "canary"


def test_canary_waits_for_traffic_then_gives_up():
    few = LiveStats(requests=5, errors=0)
    assert judge_canary(LiveStats(100, 0), few, 60, CONFIG).action == "wait"
    verdict = judge_canary(LiveStats(100, 0), few, 600, CONFIG)
    assert verdict.action == "reject" and "needs 20" in verdict.reason


def test_canary_promotes_an_equal_or_better_challenger():
    champion = LiveStats(80, 1, rated=10, mean_score=-0.6)
    assert judge_canary(champion, LiveStats(20, 0, rated=6, mean_score=0.8), 60, CONFIG).action == "promote"


@pytest.mark.parametrize("challenger, why", [
    (LiveStats(20, 2), "error rate"),
    (LiveStats(20, 0, rated=6, mean_score=-0.5), "mean feedback"),
])
def test_canary_rejects_a_regression(challenger, why):
    champion = LiveStats(80, 0, rated=10, mean_score=0.0)
    verdict = judge_canary(champion, challenger, 60, CONFIG)
    assert verdict.action == "reject" and why in verdict.reason


def test_too_few_ratings_do_not_count_against_the_challenger():
    champion = LiveStats(80, 0, rated=10, mean_score=1.0)
    assert judge_canary(champion, LiveStats(20, 0, rated=2, mean_score=-1.0), 60,
                        CONFIG).action == "promote"


def test_a_promoted_version_that_regresses_is_rolled_back():
    previous = LiveStats(100, 0, rated=20, mean_score=0.5)
    verdict = judge_promoted(LiveStats(30, 0, rated=10, mean_score=-0.4), previous, 100, CONFIG)
    assert verdict.action == "rollback" and "promoted mean feedback -0.40" in verdict.reason
    assert judge_promoted(LiveStats(30, 3), previous, 100, CONFIG).action == "rollback"


def test_a_promoted_version_is_kept_then_stable():
    previous = LiveStats(100, 0)
    assert judge_promoted(LiveStats(30, 0), previous, 100, CONFIG).action == "keep"
    assert judge_promoted(LiveStats(5, 5), previous, 100, CONFIG).action == "keep"  # too few yet
    assert judge_promoted(LiveStats(30, 0), previous, 300, CONFIG).action == "stable"

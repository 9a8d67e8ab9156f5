"""A version's recorded quality per tier, pooled from its held-out score and its rated answers
(hand-built request-log and feedback tables)."""

import pytest
from tandem.rollout.quality import heldout_tags, pooled_tags, rated_answers
from tandem.serve.students import quality_of

from tests.unit.triggers.tables import feedback, feedback_table, request, requests_table


def test_rated_answers_judge_each_answer_of_one_version_per_tier_by_its_latest_rating():
    requests = requests_table(
        request("a", 30, model_version=2, tier="batch", response=" fipo"),
        request("b", 29, model_version=2, tier="batch", response=" fipo"),
        request("c", 28, model_version=2, tier="batch", response=" fipo"),
        request("d", 27, model_version=2, tier="standard", response=" fipo"),
        request("e", 26, model_version=2, tier="batch", status=503, response=None),
        request("f", 25, model_version=3, tier="batch"),  # another version
        request("g", 24, model_version=2, tier="batch", model="other"))
    rated = feedback_table(
        feedback("a", 20, 1.0),  # right
        feedback("b", 20, 1.0, correction="zemu"),  # positive, but corrected: wrong
        feedback("c", 20, -1.0), feedback("c", 10, 1.0),  # the latest rating counts: right
        feedback("d", 20, -1.0, correction="zemu"),  # wrong
        feedback("e", 20, -1.0), feedback("f", 20, -1.0), feedback("g", 20, -1.0))
    assert rated_answers(requests, rated, model="tandem-tiny", version=2, scale="-1..1") == {
        "batch": (2, 3), "standard": (0, 1)}
    on_five = feedback_table(feedback("a", 20, 5.0), feedback("d", 20, 2.0))
    assert rated_answers(requests, on_five, model="tandem-tiny", version=2, scale="1..5") == {
        "batch": (1, 1), "standard": (0, 1)}


def test_rated_answers_pool_with_the_held_out_score_weighted_by_counts():
    tags = heldout_tags({"batch": 0.9, "standard": 0.8}, {"batch": 20, "standard": 10})
    assert quality_of(tags) == {"batch": 0.9, "standard": 0.8}  # what the router reads first
    pooled = pooled_tags(tags, {"batch": (0, 10), "interactive": (3, 4)})
    # batch: (0.9 x 20 + 0) / 30; interactive was never scored held out: rated answers alone
    assert quality_of(pooled) == {"batch": pytest.approx(0.6), "interactive": 0.75}
    assert pooled["tandem.quality_rated.batch"] == "10"
    assert "tandem.quality.standard" not in pooled  # nothing rated: left as it is
    assert pooled_tags(tags, {}) == {}

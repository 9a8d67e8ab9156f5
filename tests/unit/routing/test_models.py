from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.catalog import load_catalog
from tandem.perf import build_replica_model, pool_constants, request_cost_usd
from tandem.routing.config import RoutingConfig
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.models import (
    LiveQuality,
    ServedModel,
    admit_models,
    judged_right,
    pick_model_pool,
)
from tandem.routing.types import PoolState, RequestFeatures

GPUS = ("H100", "H200", "A100-80G", "L4")
TIERS = ("interactive", "standard", "batch")


@pytest.fixture(scope="module")
def fleet():
    """A 70B teacher and an 8B student, each on a pool of every GPU type (8 pools)."""
    catalog = load_catalog()
    priors = {}
    for role, profile in (("teacher", "llama-3.1-70b"), ("student", "llama-3.1-8b")):
        for gpu in GPUS:
            priors[f"{role}-{gpu}"] = build_replica_model(catalog, gpu, catalog.model(profile),
                                                          "fp8")
    pools = [PoolState(name=name, gpu=name.split("-", 1)[1], healthy=True, replicas=1,
                       in_flight=0, queued=0, price_per_hour=prior.price_per_hour)
             for name, prior in priors.items()]
    return priors, pools


def models(student_quality=0.9, live=None, rated=0):
    return [ServedModel("big", 3, tuple(f"teacher-{gpu}" for gpu in GPUS),
                        {tier: 0.95 for tier in TIERS}, reference=True),
            ServedModel("small", 1, tuple(f"student-{gpu}" for gpu in GPUS),
                        {tier: student_quality for tier in TIERS}, live_quality=live, rated=rated)]


def policy(priors):
    return LatencyCostPolicy(priors, RoutingConfig.gpu_defaults())


def test_the_cheapest_pair_meeting_every_target_wins(fleet):
    priors, pools = fleet
    request = RequestFeatures(500, 200, tier="interactive")  # no pool is kept free for a stricter tier
    model, decision = pick_model_pool(policy(priors), request, 0.85, models(), pools, 0.0)
    latency = policy(priors).latency  # every pool predicted, the decision predicts fewer
    every = {pool.name: (latency.predict(pool, request, 0.0),
                         request_cost_usd(pool_constants(priors[pool.name]), pool.price_per_hour,
                                          500, 200)) for pool in pools}
    meeting = [cost for latency, cost in every.values()
               if latency.ttft_ms <= 300 and latency.tpot_ms <= 25]
    assert decision.predicted_cost_usd == min(meeting)  # over both models' pools
    assert model.name == "small" and decision.pool.startswith("student-")
    # the student is far cheaper per request on every GPU: with a floor above its quality
    # the cheapest teacher pool meeting the targets wins instead
    model, decision = pick_model_pool(policy(priors), request, 0.92, models(), pools, 0.0)
    assert model.name == "big" and decision.pool.startswith("teacher-")
    assert {c.pool.split("-")[0] for c in decision.candidates} == {"teacher"}
    teacher_meeting = [cost for name, (latency, cost) in every.items() if name.startswith(
        "teacher-") and latency.ttft_ms <= 300 and latency.tpot_ms <= 25]
    assert decision.predicted_cost_usd == min(teacher_meeting)
    assert "small v1 left out: quality 0.90 (recorded for interactive) below floor 0.92" \
        in decision.reason


@settings(max_examples=200, deadline=None)
@given(floor=st.none() | st.floats(0, 1), student=st.floats(0, 1),
       live=st.none() | st.floats(0, 1), tier=st.sampled_from(TIERS),
       prompt=st.integers(1, 4000), output=st.integers(1, 1000))
def test_the_floor_is_never_violated_by_prediction(fleet, floor, student, live, tier,
                                                     prompt, output):
    priors, pools = fleet
    served = models(student, live, rated=0 if live is None else 20)
    model, decision = pick_model_pool(policy(priors), RequestFeatures(prompt, output, tier=tier),
                                      floor, served, pools, 0.0)
    expected = model.expected_quality(tier)
    assert decision.pool in model.pools
    if floor is not None and model.name == "small":
        assert expected >= floor
    if floor is not None and expected is not None and expected < floor:
        assert model.reference and "no model reaches floor" in decision.reason


def test_a_student_below_the_floor_gets_nothing(fleet):
    priors, pools = fleet
    pick = policy(priors)
    served = models(student_quality=0.9, live=0.4, rated=12)  # recorded 0.9, live 0.4
    for tier in TIERS:
        for prompt, output in ((10, 10), (500, 200), (3000, 800)):
            model, decision = pick_model_pool(pick, RequestFeatures(prompt, output, tier=tier),
                                              0.8, served, pools, 0.0)
            assert model.name == "big"
            assert "small v1 left out: quality 0.40 (live over 12 rated answers) below floor" \
                in decision.reason


def test_the_teacher_serves_when_no_model_reaches_the_floor_and_without_a_floor_all_may():
    served = models(student_quality=0.5)
    admitted, notes = admit_models(served, "batch", 0.99)
    assert [m.name for m in admitted] == ["big"] and "no model reaches floor 0.99" in notes[-1]
    assert [m.name for m in admit_models(served, "batch", None)[0]] == ["big", "small"]
    unmeasured = [replace(served[0], quality={}), replace(served[1], quality={})]
    admitted, notes = admit_models(unmeasured, "batch", 0.5)
    assert [m.name for m in admitted] == ["big"]  # a student never measured needs no floor
    assert notes == ["small v1 left out: no quality measured for batch (floor 0.5)"]


def test_live_quality_takes_over_once_enough_answers_are_rated():
    live = LiveQuality(window=20, min_rated=10)
    for _ in range(9):
        live.rate("small", 1, False)
    assert live.of("small", 1) == (None, 9)
    live.rate("small", 1, True)
    assert live.of("small", 1) == (0.1, 10)
    for _ in range(20):
        live.rate("small", 1, True)
    assert live.of("small", 1) == (1.0, 20)  # only the window counts
    assert live.of("small", 2) == (None, 0)  # per version


def test_a_rated_answer_is_right_when_scored_positive_and_not_corrected_otherwise():
    assert judged_right(1.0, None, "lamp")
    assert judged_right(0.5, " lamp ", "lamp")
    assert not judged_right(1.0, "river", "lamp")
    assert not judged_right(0.0, None, "lamp")
    assert not judged_right(-1.0, "lamp", "lamp")

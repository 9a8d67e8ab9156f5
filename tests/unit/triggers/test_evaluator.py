import pytest
from tandem.triggers.evaluator import TriggerEvaluator, submission_id
from tandem.triggers.policies import (
    DistillTrigger,
    DistillTriggerConfig,
    DriftConfig,
    DriftTrigger,
    LatencyCostAlert,
    LatencyCostConfig,
    NewLabelsConfig,
    NewLabelsTrigger,
    TriggerWindow,
)
from tandem.triggers.profile import DataProfile
from tandem.triggers.state import TriggerState

from .helpers import BASE, DRIFTED

NOW = 1_740_000_000.0
HOUR = 3600.0
LABELLED = TriggerWindow(model="tandem-tiny", model_version=3, corrections_since_training=5)
QUIET = TriggerWindow(model="tandem-tiny", model_version=3, requests=500)
SLOW = TriggerWindow(model="tandem-tiny", model_version=3, requests=100, slo_judged=100,
                     slo_misses=50,
                     slo_miss_target=0.05)


class Recorder:
    """Submit and alert sinks that remember what they were given."""

    def __init__(self, state: TriggerState | None = None, failures: int = 0):
        self.state, self.failures = state, failures
        self.submitted, self.alerts, self.claimed_at_submit = [], [], []

    def submit(self, result, job_id):
        if self.state is not None:
            self.claimed_at_submit.append(self.state.job_of(result.window_id))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dashboard down")
        self.submitted.append((result.name, result.window_id, job_id))
        return job_id

    def alert(self, result):
        self.alerts.append(result.name)


def labels(cooldown_s: float = 0.0) -> NewLabelsTrigger:
    return NewLabelsTrigger(NewLabelsConfig(min_corrections=5, cooldown_s=cooldown_s))


def evaluator(state, recorder, window=LABELLED, policies=None) -> TriggerEvaluator:
    return TriggerEvaluator(policies or [labels()], state, lambda now: window, recorder.submit,
                   recorder.alert)


def test_a_fired_retrain_claims_its_window_then_submits_once(tmp_path):
    state = TriggerState(tmp_path / "tandem-tiny.json")
    recorder = Recorder(state)
    results = evaluator(state, recorder).tick(NOW)
    window = f"new_labels@{int(NOW // HOUR)}"
    job = submission_id("tandem-tiny", window)
    assert [(r.name, r.fired, r.action) for r in results] == [("new_labels", True, "retrain")]
    assert recorder.submitted == [("new_labels", window, job)]
    assert recorder.claimed_at_submit == [job] and state.job_of(window) == job
    assert job == f"tandem-retrain-tandem-tiny-new_labels-{int(NOW // HOUR)}"


def test_a_second_tick_in_the_same_window_submits_nothing(tmp_path):
    state, recorder = TriggerState(tmp_path / "state.json"), Recorder()
    ticking = evaluator(state, recorder)
    ticking.tick(NOW)
    assert ticking.tick(NOW + 60)[0].fired  # no cool-down: the policy fires, the claim holds
    assert len(recorder.submitted) == 1
    ticking.tick(NOW + HOUR)
    assert [window for _, window, _ in recorder.submitted] == [
        f"new_labels@{int(NOW // HOUR)}", f"new_labels@{int(NOW // HOUR) + 1}"]


def test_a_restarted_loop_does_not_submit_the_window_again(tmp_path):
    path = tmp_path / "state.json"
    first = Recorder()
    evaluator(TriggerState(path), first).tick(NOW)
    again = Recorder()
    evaluator(TriggerState(path), again).tick(NOW + 120)
    assert len(first.submitted) == 1 and again.submitted == []


def test_the_cool_down_also_survives_a_restart(tmp_path):
    path = tmp_path / "state.json"
    evaluator(TriggerState(path), Recorder(), policies=[labels(cooldown_s=6 * HOUR)]).tick(NOW)
    later = Recorder()
    results = evaluator(TriggerState(path), later, policies=[labels(cooldown_s=6 * HOUR)]).tick(
        NOW + 2 * HOUR)
    assert not results[0].fired and "cooling down" in results[0].reason
    assert later.submitted == []


def test_a_quiet_window_submits_and_alerts_nothing(tmp_path):
    recorder = Recorder()
    policies = [labels(), LatencyCostAlert(LatencyCostConfig(min_requests=1))]
    results = evaluator(TriggerState(tmp_path / "s.json"), recorder, QUIET, policies).tick(NOW)
    assert [r.fired for r in results] == [False, False]
    assert recorder.submitted == [] and recorder.alerts == []


def test_an_alert_goes_to_the_alert_sink_and_never_submits(tmp_path):
    state, recorder = TriggerState(tmp_path / "s.json"), Recorder()
    alert = LatencyCostAlert(LatencyCostConfig(min_requests=1, cooldown_s=0))
    results = evaluator(state, recorder, SLOW, [alert]).tick(NOW)
    assert results[0].fired and results[0].action == "alert"
    assert recorder.alerts == ["latency_cost"] and recorder.submitted == []
    assert not state.already_submitted(results[0].window_id)


def test_retrain_triggers_firing_together_share_one_job(tmp_path):
    state, recorder = TriggerState(tmp_path / "s.json"), Recorder()
    drift = DriftTrigger(DriftConfig(min_requests=len(DRIFTED), cooldown_s=0))
    window = TriggerWindow(model="tandem-tiny", model_version=3, corrections_since_training=5,
                           prompts=tuple(DRIFTED), profile=DataProfile.build(BASE))
    results = evaluator(state, recorder, window, [drift, labels()]).tick(NOW)
    assert [r.fired for r in results] == [True, True]
    job = submission_id("tandem-tiny", results[0].window_id)
    assert recorder.submitted == [("drift", results[0].window_id, job)]
    assert state.job_of(results[1].window_id) == job


def test_a_distillation_fires_at_enough_answers_and_is_a_job_of_its_own(tmp_path):
    state, recorder = TriggerState(tmp_path / "s.json"), Recorder()
    distill = DistillTrigger(DistillTriggerConfig(student_model="tandem-tiny-student",
                                                  min_answers=1000, cooldown_s=0))
    few = TriggerWindow(model="tandem-tiny", answers_since_distillation=999)
    [quiet] = evaluator(state, recorder, few, [distill]).tick(NOW)
    assert not quiet.fired and "999 logged answers since the last distillation into " \
        "tandem-tiny-student (threshold 1000)" == quiet.reason
    window = TriggerWindow(model="tandem-tiny", model_version=3, corrections_since_training=5,
                           answers_since_distillation=1000)
    results = evaluator(state, recorder, window, [labels(), distill]).tick(NOW)
    assert [(r.name, r.fired, r.action) for r in results] == [
        ("new_labels", True, "retrain"), ("distill", True, "distill")]
    assert [(name, job) for name, _, job in recorder.submitted] == [
        ("new_labels", submission_id("tandem-tiny", results[0].window_id)),
        ("distill", submission_id("tandem-tiny", results[1].window_id, "distill"))]
    assert recorder.submitted[1][2] == f"tandem-distill-tandem-tiny-distill-{int(NOW // HOUR)}"


def test_a_failed_submit_is_retried_under_the_same_id(tmp_path):
    state = TriggerState(tmp_path / "s.json")
    recorder = Recorder(state, failures=1)
    ticking = evaluator(state, recorder)
    ticking.tick(NOW)
    assert recorder.submitted == [] and state.already_submitted(f"new_labels@{int(NOW // HOUR)}")
    ticking.tick(NOW + 60)
    ticking.tick(NOW + 120)
    job = submission_id("tandem-tiny", f"new_labels@{int(NOW // HOUR)}")
    assert [submitted for _, _, submitted in recorder.submitted] == [job]


@pytest.mark.parametrize("model, window, expected", [
    ("tandem-tiny", "quality@483333", "tandem-retrain-tandem-tiny-quality-483333"),
    ("My.Model_v2", "new_labels@1", "tandem-retrain-My.Model_v2-new_labels-1"),
])
def test_submission_ids_are_derived_from_the_window(model, window, expected):
    assert submission_id(model, window) == expected

"""The loop's metrics: each retraining job's end counted once, never again after a restart,
and rollout stages as numbers. Job statuses come from a dict the test changes (the Jobs
API's answers as plain data)."""

from tandem.rollout.controller import STAGE
from tandem.watch.metrics import STAGES, JobOutcomes, LoopMetrics


def outcomes(jobs, statuses, ended):
    return JobOutcomes("m", lambda: dict(jobs), statuses.get,
                       lambda *labels: ended.append(labels))


def test_each_job_that_ends_is_counted_once_with_its_trigger_and_status():
    jobs = {"quality@10": "job-a", "drift@10": "job-b"}
    statuses = {"job-a": "RUNNING", "job-b": "PENDING"}
    ended = []
    watch = outcomes(jobs, statuses, ended)
    watch.check()
    assert ended == []
    statuses.update({"job-a": "FAILED"})
    watch.check()
    watch.check()
    assert ended == [("m", "quality", "FAILED")]
    jobs["new_labels@11"] = "job-c"  # submitted later, ended between two checks
    statuses.update({"job-b": "SUCCEEDED", "job-c": "STOPPED"})
    watch.check()
    assert sorted(ended) == [("m", "drift", "SUCCEEDED"), ("m", "new_labels", "STOPPED"),
                             ("m", "quality", "FAILED")]


def test_jobs_that_had_ended_before_a_restart_are_not_counted_again():
    ended = []
    watch = outcomes({"quality@10": "job-a"}, {"job-a": "FAILED"}, ended)
    watch.check()
    watch.check()
    assert ended == []


def test_a_job_ray_does_not_know_yet_is_asked_again():
    jobs, statuses, ended = {"quality@10": "job-a"}, {}, []
    watch = outcomes(jobs, statuses, ended)
    watch.check()
    statuses["job-a"] = "FAILED"
    watch.check()
    assert ended == [("m", "quality", "FAILED")]


def test_rollout_stages_are_numbers_and_untagged_versions_export_nothing():
    metrics = LoopMetrics()
    exported = []
    metrics.stage.set = lambda value, tags: exported.append((value, tags))  # capture only
    metrics.observed_tags("m", 3, {STAGE: "canary"})
    metrics.observed_tags("m", 4, {"other": "x"})
    metrics.observed_tags("m", 3, {STAGE: "rolled_back"})
    assert exported == [(STAGES["canary"], {"model": "m", "version": "3"}),
                        (STAGES["rolled_back"], {"model": "m", "version": "3"})]

"""The loop end to end, as `make demo` tells it (tandem.demos.loop), with fewer requests and one
pool: v1 serves, traffic drifts into the new slice, users correct it, a trigger retrains,
the rollout evaluates, canaries and promotes v2, and v2 answers the new slice better,
measured through HTTP on rows no correction came from."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-tiny"


def test_drift_and_corrections_retrain_canary_and_promote_a_better_version(stack, repo_root,
                                                                           monkeypatch):
    from tandem.demos.loop import StoryConfig, run_story, summary_lines
    from tandem.registry import CHAMPION, alias_version, version_tags
    from tandem.rollout.controller import STAGE
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import shutdown

    monkeypatch.chdir(repo_root)  # jobs upload the working dir
    cheap = load_serve_config(REPO / "apps" / "serve.local.yaml").pools["cheap"]
    config = StoryConfig(
        model=MODEL, finetune_overrides=["--eval_max_examples=64"],
        serve_overrides={"pools": {"cheap": cheap.model_dump(mode="json")}},
        # v2 learns the new slice from the corrections while the replayed rows keep the old
        # one. With 120 corrections, 6 epochs at v1's learning rate both margins were thin
        # (new slice 6-20 % against the 10-point gain asserted, holdout drops up to 0.045
        # against the gate's 0.05); 200 corrections, 12 epochs at a third of v1's rate (v2
        # continues v1): new slice 50 %, holdout +0.03 (training now repeats to the digit)
        drift_requests=200, canary_requests=30, eval_rows=50, clients=4,
        watch={"retrain_sample": 1600, "correction_repeats": 3,
               "finetune_overrides": ["--eval_max_examples=64", "--learning_rate=1e-3"],
               "new_labels": {"min_corrections": 40}, "drift": {"min_requests": 60},
               "quality": {"min_rated": 1000},  # drift and new labels tell this story
               "rollout": {"canary_share": 0.5, "canary_min_requests": 10}})
    try:
        result = run_story(config, stack)
        print("\n".join(summary_lines(result, stack, MODEL)))
        jobs_before, jobs_after = _retrain_jobs_around_a_restarted_watcher(config, stack)
    finally:
        shutdown(stack, log=lambda _: None)

    assert result.trigger.split(":")[0] in {"drift", "new_labels"}, result.trigger
    assert [v.split(":")[0] for v in result.verdicts] == ["canary", "promote"], result.verdicts
    new = alias_version(MODEL, CHAMPION, stack.mlflow_url)
    assert new == result.champion_after and new != result.champion_before
    tags = version_tags(MODEL, new, stack.mlflow_url)
    assert tags["tandem.parent_version"] == str(result.champion_before)
    assert tags["tandem.trigger"] == result.trigger and tags["tandem.trigger_window"]
    assert tags[STAGE] == "promoted"
    assert result.exact_match_after >= result.exact_match_before + 0.1, result
    assert result.traces > 0 and result.assessments > 0, result  # in the MLflow UI
    assert len(jobs_before) == 1 and jobs_after == jobs_before  # no second job after a restart


def _retrain_jobs_around_a_restarted_watcher(config, stack) -> tuple[list[str], list[str]]:
    """Ray's retraining jobs before and after one tick of a fresh watcher (`tandem watch`
    restarted) over the same durable trigger state, in the trigger's window."""
    import time

    from tandem.ray_jobs import job_client
    from tandem.watch.build import build_tail, build_watcher

    def retrain_jobs() -> list[str]:
        return sorted(job.submission_id for job in job_client(stack).list_jobs()
                      if (job.submission_id or "").startswith(f"tandem-retrain-{MODEL}-"))

    before = retrain_jobs()
    watch = config.watch_config()
    tail = build_tail(watch, stack, time.time())
    tail.advance(time.time())
    build_watcher(watch, stack, tail).tick(time.time())
    return before, retrain_jobs()

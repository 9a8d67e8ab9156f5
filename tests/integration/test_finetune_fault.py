"""A training worker killed mid-run: Ray Train restarts the worker group from
the last checkpoint and the run still registers a model."""

from __future__ import annotations

import os
import signal
import time

import pytest
from tandem.ray_jobs import TERMINAL

from tests.integration.jobs_helpers import wait_for_job

pytestmark = pytest.mark.integration

# Enough epochs that the kill lands after the first checkpoint and well before the end.
LONG_TRAINING = ["--epochs=4", "--eval_max_examples=16", "--registered_model=tandem-fault"]


def _alive_train_worker_pids(address: str) -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"),
                                                    ("state", "=", "ALIVE")])
    return [actor.pid for actor in actors if actor.pid]


def test_killed_worker_resumes_from_checkpoint_and_registers(stack, repo_root):
    from mlflow import MlflowClient
    from tandem.ray_jobs import job_client, submit_job

    client = job_client(stack)
    job_id = submit_job(stack, ["python", "jobs/finetune.py", "--config", "jobs/configs/tiny.yaml",
                                *LONG_TRAINING], working_dir=str(repo_root))
    deadline = time.monotonic() + 600
    first_checkpoint_at = None
    killed = None
    while killed is None and time.monotonic() < deadline:
        assert str(client.get_job_status(job_id).value) not in TERMINAL, "job ended before the kill"
        if first_checkpoint_at is None and list(stack.checkpoints_dir.glob("tandem-fault-*/checkpoint_*")):
            first_checkpoint_at = time.monotonic()
        # give the Train controller a moment to record the checkpoint before the kill
        if first_checkpoint_at is not None and time.monotonic() - first_checkpoint_at > 4:
            pids = _alive_train_worker_pids(stack.dashboard_url)
            if pids:
                killed = pids[-1]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.5)
    assert killed is not None, "no checkpoint within the deadline"

    status = wait_for_job(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    assert "resuming from checkpoint after epoch" in logs
    assert "epoch 4/4 done" in logs
    assert killed not in _alive_train_worker_pids(stack.dashboard_url)
    version = MlflowClient(stack.mlflow_url).get_model_version_by_alias("tandem-fault", "champion")
    assert version.tags["tandem.eval_exact_match"]

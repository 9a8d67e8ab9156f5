"""MLflow unreachable at the end of training: the job keeps its checkpoint,
says how to register it later, and `tandem register --checkpoint` does so."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from tandem.stack import free_port

from tests.integration.jobs_helpers import wait_for_job

pytestmark = pytest.mark.integration


def test_training_survives_mlflow_outage_and_registers_later(stack, repo_root):
    from mlflow import MlflowClient
    from tandem.ray_jobs import job_client, submit_job

    client = job_client(stack)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    job_id = submit_job(
        stack,
        ["python", "jobs/finetune.py", "--config", "jobs/configs/tiny.yaml", "--epochs=1",
         "--eval_max_examples=8", "--registered_model=tandem-outage"],
        working_dir=str(repo_root),
        extra_env={"TANDEM_MLFLOW_PORT": dead.rsplit(":", 1)[1], "MLFLOW_TRACKING_URI": dead},
    )
    assert wait_for_job(client, job_id) == "FAILED"
    logs = client.get_job_logs(job_id)
    assert "training without tracking" in logs
    assert "retry 1/3" in logs
    match = re.search(r"tandem register --checkpoint (\S+) --model tandem-outage", logs)
    assert match, logs[-2000:]
    checkpoint = match.group(1)
    assert os.path.isdir(checkpoint)

    result = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "register", "--checkpoint", checkpoint,
         "--model", "tandem-outage"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    version = MlflowClient(stack.mlflow_url).get_model_version_by_alias("tandem-outage", "champion")
    assert version.tags["tandem.dataset_fingerprint"]
    assert float(version.tags["tandem.eval_loss"]) > 0


def test_register_rejects_a_directory_that_is_no_checkpoint(stack, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "register", "--checkpoint", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "is not a Tandem checkpoint" in result.stderr and "Traceback" not in result.stderr

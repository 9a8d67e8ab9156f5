"""The fine-tuning job end to end on the real local stack: Ray Jobs API ->
Ray Train -> MLflow registry -> download -> real vLLM generates from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.jobs_helpers import wait_for_job

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
# The shipped config (12 epochs: long enough to learn the task), with a smaller eval set.
FAST_TRAINING = ["--eval_max_examples=64"]


@pytest.fixture(scope="module")
def job_client(stack):
    from tandem.ray_jobs import job_client

    return job_client(stack)


@pytest.fixture(scope="module")
def finetune_job(stack, job_client, repo_root):
    """Submit the fine-tune exactly as the README's `ray job submit` line does."""
    from tandem.ray_jobs import submit_job

    job_id = submit_job(stack, ["python", "jobs/finetune.py", "--config", "jobs/configs/tiny.yaml",
                                *FAST_TRAINING], working_dir=str(repo_root))
    status = wait_for_job(job_client, job_id)
    logs = job_client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    return job_id, logs


def test_job_logs_show_progress(finetune_job):
    _, logs = finetune_job
    assert "tokens/s" in logs and "eval_exact_match" in logs
    assert "registered tandem-tiny version" in logs


def test_registered_version_has_aliases_and_lineage(stack, finetune_job):
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    model = client.get_registered_model("tandem-tiny")
    champion = client.get_model_version_by_alias("tandem-tiny", "champion")
    assert model.aliases["challenger"] == champion.version  # first version: both aliases
    tags = champion.tags
    for key in ("tandem.run_id", "tandem.dataset_fingerprint", "tandem.base_model",
                "tandem.git_commit", "tandem.config_hash", "tandem.eval_exact_match",
                "tandem.eval_loss"):
        assert tags.get(key), f"missing version tag {key}"
    assert tags["tandem.base_model"] == "tiny"
    run = client.get_run(tags["tandem.run_id"])
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(history) >= 2
    for metric in ("eval_loss", "eval_exact_match", "tokens_per_s"):
        assert metric in run.data.metrics


def test_registered_model_loads_in_vllm_and_answers_like_training_eval(stack, finetune_job):
    from mlflow import MlflowClient
    from tandem.registry import download_model

    model_dir, version = download_model("models:/tandem-tiny@champion", stack.models_dir / "registry",
                                        stack.mlflow_url)
    assert (model_dir / "tokenizer.json").exists() and (model_dir / "config.json").exists()
    again, _ = download_model(f"models:/tandem-tiny/{version}", stack.models_dir / "registry",
                              stack.mlflow_url)
    assert again == model_dir  # cached by version

    rows = [json.loads(line) for line in
            (stack.home / "datasets" / "task" / "holdout.jsonl").read_text().splitlines()[:64]]
    result = subprocess.run(
        [sys.executable, str(HERE / "vllm_generate.py"), str(model_dir),
         json.dumps([row["prompt"] for row in rows])],
        capture_output=True, text=True, timeout=600,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("COMPLETIONS=")), None)
    assert line is not None, result.stderr[-3000:]
    completions = json.loads(line.removeprefix("COMPLETIONS="))
    exact = sum(c.strip() == row["completion"].strip() for c, row in zip(completions, rows)) / len(rows)
    tagged = float(MlflowClient(stack.mlflow_url).get_model_version(
        "tandem-tiny", str(version)).tags["tandem.eval_exact_match"])
    # vLLM serves what training evaluated: same greedy answers on the same 64 holdout rows
    assert exact == pytest.approx(tagged, abs=0.05)
    assert exact > 0.5


def test_stdlib_platform_works_inside_a_ray_job(stack, job_client, repo_root):
    from tandem.ray_jobs import submit_job

    probe = "import platform, uuid; print('system=' + platform.system())"
    job_id = submit_job(stack, ["python", "-c", probe], working_dir=str(repo_root))
    assert wait_for_job(job_client, job_id, timeout_s=300) == "SUCCEEDED"
    assert "system=Linux" in job_client.get_job_logs(job_id)

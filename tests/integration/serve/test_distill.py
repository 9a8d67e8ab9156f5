"""Distillation from the served model's production answers: `jobs/distill.py` through
`ray job submit` registers a 1-layer student of `tandem-serve` with its lineage, trained on
what the teacher answered in this session's earlier tests; a student whose tokenizer differs
is refused with exit 2 before any training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.jobs_helpers import wait_for_job
from tests.integration.serve.conftest import MODEL

pytestmark = pytest.mark.integration

STUDENT = "tandem-serve-student"


def _distill_args(*extra: str) -> list[str]:
    return ["jobs/distill.py", "--config", "jobs/configs/distill-tiny.yaml",
            f"--teacher=models:/{MODEL}@champion", f"--student_model={STUDENT}", *extra]


def test_a_distillation_job_registers_a_smaller_student_with_its_lineage(
        served, registered, http, repo_root):
    from tandem.jobs import _client, submit_job
    from tandem.registry import CHAMPION, alias_version, download_model, version_tags
    from tandem.triggers.retrain_data import read_jsonl

    answered = http.post(f"{served.api_url}/v1/completions", timeout=60, json={
        "model": MODEL, "prompt": "translate: lamp river =>", "max_tokens": 4})
    assert answered.status_code == 200, answered.text  # one answer this test knows
    client = _client(served)
    job_id = submit_job(served, ["python", *_distill_args(
        "--finetune.epochs=2", "--finetune.eval_max_examples=20", "--train_sample=50")],
        working_dir=str(repo_root))
    status = wait_for_job(client, job_id, timeout_s=900)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]

    version = alias_version(STUDENT, CHAMPION, served.mlflow_url)
    tags = version_tags(STUDENT, version, served.mlflow_url)
    teacher_version = alias_version(MODEL, CHAMPION, served.mlflow_url)
    assert tags["tandem.teacher_version"] == f"models:/{MODEL}/{teacher_version}"
    start, end = tags["tandem.traffic_window"].split("/")
    assert start < end
    assert tags["tandem.dataset_fingerprint"] and tags["tandem.eval_exact_match"]
    student_dir, _ = download_model(f"models:/{STUDENT}/{version}",
                                    served.models_dir / "registry", served.mlflow_url)
    teacher_dir, _ = download_model(f"models:/{MODEL}/{teacher_version}",
                                    served.models_dir / "registry", served.mlflow_url)
    layers = [json.loads((path / "config.json").read_text())["num_hidden_layers"]
              for path in (student_dir, teacher_dir)]
    assert layers == [1, 2]
    [data] = sorted((served.home / "datasets" / "distill").glob(f"{STUDENT}-*.jsonl"))
    rows = {row["prompt"]: row["completion"] for row in read_jsonl(data)}
    assert rows["translate: lamp river =>"] == " " + \
        answered.json()["choices"][0]["text"].strip()  # the teacher's own answer
    assert f"distilling {MODEL} v{teacher_version} into {STUDENT}" in logs


def test_a_student_with_another_tokenizer_exits_2_naming_both(served, registered, repo_root):
    from tandem.models.tiny import resolve_base_model
    from transformers import AutoTokenizer

    other = served.models_dir / "base" / "other-tokenizer"
    base = resolve_base_model("tiny", served.models_dir / "base")
    if not (other / "config.json").exists():
        shutil.copytree(base, other)
        tokenizer = AutoTokenizer.from_pretrained(base)
        tokenizer.add_tokens(["<|extra|>"])
        tokenizer.save_pretrained(other)
    done = subprocess.run([sys.executable, *_distill_args(f"--student.base_model={other}")],
                          capture_output=True, text=True, timeout=300, cwd=repo_root,
                          env=os.environ.copy())
    assert done.returncode == 2, done.stderr[-2000:]
    assert "differs from the teacher's" in done.stderr and str(other) in done.stderr
    assert "Traceback" not in done.stderr

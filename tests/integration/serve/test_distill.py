"""Distillation from the served model's production answers, then routing across teacher
and student: `jobs/distill.py` through `ray job submit` registers a 1-layer student of
`tandem-serve` with its lineage, trained on what the teacher answered in this session's
earlier tests; a student whose tokenizer differs is refused with exit 2 before any training.
The student then serves on `cheap` under the teacher's name (one engine start, one more to
restore the usual pools): both answer, the header names which, a quality floor sends
requests to the teacher, and a student whose live quality drops is taken out of routing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.jobs_helpers import wait_for_job
from tests.integration.serve.conftest import MODEL, decisions, logged_rows, served_config

pytestmark = pytest.mark.integration

STUDENT = "tandem-serve-student"


def _distill_args(*extra: str) -> list[str]:
    return ["jobs/distill.py", "--config", "jobs/configs/distill-tiny.yaml",
            f"--teacher=models:/{MODEL}@champion", f"--student_model={STUDENT}", *extra]


@pytest.fixture(scope="module")
def distilled(served, registered, http, repo_root):
    """One distillation job through `ray job submit`: (its logs, an answer it learned from)."""
    from tandem.ray_jobs import job_client, submit_job

    answered = http.post(f"{served.api_url}/v1/completions", timeout=60, json={
        "model": MODEL, "prompt": "translate: lamp river =>", "max_tokens": 4})
    assert answered.status_code == 200, answered.text  # one answer this test knows
    client = job_client(served)
    job_id = submit_job(served, ["python", *_distill_args(
        "--finetune.epochs=2", "--finetune.eval_max_examples=20", "--train_sample=50")],
        working_dir=str(repo_root))
    status = wait_for_job(client, job_id, timeout_s=900)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    return logs, answered


def test_a_distillation_job_registers_a_smaller_student_with_its_lineage(distilled, served):
    from tandem.registry import CHAMPION, alias_version, download_model, version_tags
    from tandem.triggers.retrain_data import read_jsonl

    logs, answered = distilled
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
    scored = {tier: float(value) for tier, value in tags.items()
              if tier.startswith("tandem.quality.")}
    if "quality per tier not recorded" not in logs:  # enough held-out live prompts this run
        assert scored and all(0 <= value <= 1 for value in scored.values())
        assert f"{STUDENT} v{version} exact match per tier" in logs
        teacher_tags = version_tags(MODEL, teacher_version, served.mlflow_url)
        assert scored.keys() <= teacher_tags.keys()


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


@pytest.fixture(scope="module")
def routed(served, distilled):
    """`cheap` serves the student under the teacher's name. The test fixes the student's
    recorded quality (0.9 in every tier, as if scored on 10 held-out prompts each) so the
    floors below are known; the job's own scores depend on this session's traffic."""
    from tandem.registry import CHAMPION, alias_version, set_version_tags
    from tandem.rollout.quality import heldout_tags
    from tandem.serve.config import ServeAppConfig
    from tandem.serve.deploy import deploy

    version = alias_version(STUDENT, CHAMPION, served.mlflow_url)
    tiers = ("interactive", "standard", "batch")
    set_version_tags(STUDENT, version, heldout_tags(dict.fromkeys(tiers, 0.9),
                                                    dict.fromkeys(tiers, 10)),
                     served.mlflow_url)
    data = served_config().model_dump(mode="json")
    data["students"] = [{"model": f"models:/{STUDENT}@champion", "pools": ["cheap"]}]
    deploy(ServeAppConfig.model_validate(data), served)
    try:
        yield version
    finally:
        deploy(served_config(), served)


def _batch(served, http, floor: str | None, prompt: str = "translate: red cat =>"):
    headers = {"x-tandem-tier": "batch"} | ({"x-tandem-min-quality": floor} if floor else {})
    return http.post(f"{served.api_url}/v1/completions", timeout=60, headers=headers, json={
        "model": MODEL, "prompt": prompt, "max_tokens": 4, "temperature": 0})


def test_two_models_behind_one_name_both_answer_and_the_header_names_the_one_that_did(
        served, http, routed):
    from tandem.registry import CHAMPION, alias_version

    teacher_version = alias_version(MODEL, CHAMPION, served.mlflow_url)
    student = _batch(served, http, "0.5")  # both reach it: the cheaper pool, the student's
    assert student.status_code == 200, student.text
    assert student.headers["x-tandem-model"] == f"models:/{STUDENT}/{routed}"
    assert student.headers["x-tandem-pool"] == "cheap"
    teacher = _batch(served, http, "0.95")  # above the student's 0.9: the teacher
    assert teacher.status_code == 200, teacher.text
    assert teacher.headers["x-tandem-model"] == f"models:/{MODEL}/{teacher_version}"
    assert teacher.headers["x-tandem-pool"] == "fast"
    rows = {row["request_id"]: row for row in logged_rows(
        served, {student.headers["x-request-id"], teacher.headers["x-request-id"]})}
    assert rows[student.headers["x-request-id"]]["model"] == STUDENT  # per model downstream
    assert rows[teacher.headers["x-request-id"]]["model"] == MODEL
    reason = decisions(served)[teacher.headers["x-request-id"]]["reason"]
    assert f"{STUDENT} v{routed} left out: quality 0.90 (recorded for batch) below floor 0.95" \
        in reason
    card = http.get(f"{served.api_url}/v1/models/{MODEL}", timeout=10).json()
    assert card["students"] == [STUDENT] and card["pools"].keys() == {"fast"}
    bad = _batch(served, http, "1.5")
    assert bad.status_code == 400 and "x-tandem-min-quality" in bad.json()["error"]["message"]
    unknown = http.post(f"{served.api_url}/v1/completions", timeout=30, json={
        "model": "no-such-logical-model", "prompt": "translate: red =>", "max_tokens": 2})
    assert unknown.status_code == 404


def test_a_student_is_removed_from_routing_when_its_live_quality_drops(served, http, routed):
    answered = [_batch(served, http, "0.5", f"translate: {word} =>")
                for word in ("red", "blue", "green", "cat", "dog", "bird", "cup", "egg",
                             "milk", "rice")]
    assert all(r.headers.get("x-tandem-model", "").startswith(f"models:/{STUDENT}/")
               for r in answered), [r.headers.get("x-tandem-model") for r in answered]
    for reply in answered:  # every answer judged wrong by its user
        rated = http.post(f"{served.api_url}/v1/feedback", timeout=30, json={
            "request_id": reply.headers["x-request-id"], "score": -1})
        assert rated.status_code == 201, rated.text
    after = _batch(served, http, "0.5")
    assert after.status_code == 200
    assert after.headers["x-tandem-model"].startswith(f"models:/{MODEL}/")
    reason = decisions(served)[after.headers["x-request-id"]]["reason"]
    assert f"{STUDENT} v{routed} left out: quality 0.00 (live over 10 rated answers) below " \
           "floor 0.5" in reason
    unfloored = _batch(served, http, None)  # no floor (the local tiers set none): any model
    assert unfloored.headers["x-tandem-model"].startswith(f"models:/{STUDENT}/")


def test_the_watcher_records_rated_answers_in_the_students_quality_and_routes_by_it(
        served, routed):
    """After the ratings above (10 of the student's batch answers judged wrong), one step
    of the loop pools them with the held-out 0.9 over 10 prompts: batch 0.45 at most, on
    the version's tags and in the route table every ingress replica reads."""
    import time

    from tandem.registry import version_tags
    from tandem.serve.deploy import current_table
    from tandem.telemetry.feedback import read_feedback
    from tandem.watch.build import build_quality_refresh
    from tandem.watch.config import WatchConfig

    config = WatchConfig(model=MODEL, distill={"student_model": STUDENT})
    step = build_quality_refresh(config, served)

    def refresh() -> list[str]:  # one step of `tandem watch`, all feedback taken as new
        return step(read_feedback(served.home / "telemetry"))

    # the ingress writes the request log every 2 s: a step may see some of the 10 rated
    # answers before the rest, as the loop would; step until all are in
    lines, deadline = [], time.monotonic() + 30
    while True:
        lines += refresh()
        tags = version_tags(STUDENT, routed, served.mlflow_url)
        rated = int(tags.get("tandem.quality_rated.batch", 0))
        if rated >= 10 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert any(line.startswith(f"{STUDENT} v{routed} quality from rated answers") for line in lines)
    assert rated >= 10 and float(tags["tandem.quality.batch"]) <= 9 / (10 + rated) + 1e-4
    assert tags["tandem.quality_heldout.batch"] == "0.9000"  # the held-out score stays
    table = current_table(served)["models"][STUDENT]["quality"]
    assert table["batch"] == float(tags["tandem.quality.batch"])
    assert not [line for line in refresh() if line.startswith(STUDENT)]  # nothing new to write

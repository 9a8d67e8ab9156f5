"""LoRA adapters end to end: a LoRA fine-tune submitted with `ray job submit` registers the
adapter unmerged, the `cheap` pool's engine serves it beside the base under its own model
name, and promote, rollback and canary move between adapter versions without restarting the
engine. A version trained on another base is refused naming both (CLI exit 2, admin 400).

The module redeploys `cheap` with LoRA enabled (one engine start) and restores the usual
pools at the end (one more)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.jobs_helpers import wait_for_job
from tests.integration.serve.conftest import MODEL, logged_rows, served_config

pytestmark = pytest.mark.integration

ADAPTER = "tandem-serve-support"
PROMPTS = ["translate: red cat =>", "translate: green bird =>", "translate: blue fish =>"]


def adapter_config(adapter_uri: str):
    from tandem.serve.config import ServeAppConfig

    data = served_config().model_dump(mode="json")
    data["adapters"] = [adapter_uri]
    data["pools"]["cheap"]["adapters"] = {"max_adapters": 4}
    return ServeAppConfig.model_validate(data)


def tandem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())


def cheap_replicas(app: str) -> list[str]:
    """The replica ids of the `cheap` engine's application (a restart would change them)."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return sorted(replica["replica_id"]
                  for deployment in details["applications"][app]["deployments"].values()
                  for replica in deployment["replicas"])


def complete(served, http, model: str, prompt: str, **extra) -> requests.Response:
    return http.post(f"{served.api_url}/v1/completions", timeout=120, json={
        "model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, **extra})


@pytest.fixture(scope="module")
def job_client(served):
    from tandem.ray_jobs import job_client

    return job_client(served)


@pytest.fixture(scope="module")
def adapter_job(served, registered, job_client, repo_root):
    """The README's LoRA job, through `ray job submit`, on the served base."""
    from tandem.ray_jobs import submit_job

    job_id = submit_job(served, [
        "python", "jobs/finetune.py", "--config", "jobs/configs/tiny-adapter.yaml",
        f"--base_model=models:/{MODEL}@champion", f"--registered_model={ADAPTER}",
        "--epochs=2", "--eval_max_examples=20"], working_dir=str(repo_root))
    status = wait_for_job(job_client, job_id, timeout_s=900)
    logs = job_client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-3000:]
    return logs


@pytest.fixture(scope="module")
def adapters(served, registered, adapter_job):
    """Adapter v1 (the job's), v2 (v1's weights scaled: another real adapter on the same
    base) and a version whose tag names another base; `cheap` serving v1 beside the base."""
    from safetensors.torch import load_file, save_file
    from tandem.registry import (
        CHAMPION,
        Lineage,
        alias_version,
        download_model,
        register_adapter,
    )
    from tandem.serve.deploy import deploy

    first = alias_version(ADAPTER, CHAMPION, served.mlflow_url)
    first_dir, _ = download_model(f"models:/{ADAPTER}/{first}", served.models_dir / "registry",
                                  served.mlflow_url)
    scaled = served.home / "adapter-scaled"
    scaled.mkdir(exist_ok=True)
    weights = load_file(first_dir / "adapter_model.safetensors")
    save_file({key: value * 3 if "lora_B" in key else value for key, value in weights.items()},
              scaled / "adapter_model.safetensors")
    (scaled / "adapter_config.json").write_text((first_dir / "adapter_config.json").read_text())
    base = f"models:/{MODEL}/{registered}"
    second = register_adapter(scaled, ADAPTER, Lineage(adapter_base=base, trigger="test"),
                              served.mlflow_url)
    alien = register_adapter(scaled, ADAPTER, Lineage(adapter_base="models:/tandem-other/7"),
                             served.mlflow_url)
    deploy(adapter_config(f"models:/{ADAPTER}@champion"), served)
    try:
        yield {"first": first, "second": second, "alien": alien, "base": base,
               "first_dir": first_dir}
    finally:
        deploy(served_config(), served)


def test_the_lora_job_registers_the_adapter_alone_with_its_base(served, registered, adapters,
                                                               adapter_job):
    from mlflow import MlflowClient

    client = MlflowClient(served.mlflow_url)
    version = client.get_model_version(ADAPTER, str(adapters["first"]))
    assert version.tags["tandem.adapter_base"] == f"models:/{MODEL}/{registered}"
    for key in ("tandem.run_id", "tandem.dataset_fingerprint", "tandem.config_hash",
                "tandem.eval_exact_match"):
        assert version.tags.get(key), key
    assert f"models:/{MODEL}/{registered}" in version.description  # shown in the MLflow UI
    # the registered model's tag follows its newest version (here the one of another base)
    assert client.get_registered_model(ADAPTER).tags["tandem.adapter_base"] == \
        "models:/tandem-other/7"
    files = {path.name for path in adapters["first_dir"].iterdir()}
    assert "adapter_config.json" in files and "config.json" not in files
    assert "(adapter on models:/" in adapter_job


def test_models_lists_the_adapter_on_its_base(served, http, adapters):
    cards = {card["id"]: card for card in
             http.get(f"{served.api_url}/v1/models", timeout=30).json()["data"]}
    card = cards[ADAPTER]
    assert card["parent"] == MODEL and card["adapter_base"] == adapters["base"]
    assert card["version"] == str(adapters["first"]) and list(card["pools"]) == ["cheap"]
    assert "parent" not in cards[MODEL]


def test_the_adapter_answers_from_the_base_engine_like_the_merged_model(served, http, adapters):
    from peft import PeftModel
    from tandem.models.generate import greedy_complete
    from tandem.registry import download_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    replies = [complete(served, http, ADAPTER, prompt) for prompt in PROMPTS]
    assert all(reply.status_code == 200 for reply in replies), replies[0].text
    assert {reply.headers["x-tandem-pool"] for reply in replies} == {"cheap"}
    assert {reply.headers["x-tandem-model-version"] for reply in replies} == {
        str(adapters["first"])}
    assert {reply.json()["model"] for reply in replies} == {f"{ADAPTER}-v{adapters['first']}"}
    served_text = [reply.json()["choices"][0]["text"] for reply in replies]

    base_dir, _ = download_model(adapters["base"], served.models_dir / "registry",
                                 served.mlflow_url)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                       adapters["first_dir"]).merge_and_unload()
    assert served_text == greedy_complete(merged, tokenizer, PROMPTS, max_new_tokens=6)
    base_text = [complete(served, http, MODEL, prompt).json()["choices"][0]["text"]
                 for prompt in PROMPTS]
    assert base_text != served_text  # the adapter changed the answers


def test_the_request_log_and_feedback_know_which_adapter_answered(served, http, adapters):
    reply = complete(served, http, ADAPTER, PROMPTS[0])
    request_id = reply.json()["id"]
    [row] = logged_rows(served, {request_id})
    assert (row["model"], row["model_version"], row["pool"]) == (
        ADAPTER, adapters["first"], "cheap")
    feedback = http.post(f"{served.api_url}/v1/feedback", timeout=30,
                         json={"request_id": request_id, "score": 1})
    assert feedback.status_code == 201, feedback.text


def test_an_unknown_adapter_is_a_404_like_any_unknown_model(served, http, adapters):
    reply = complete(served, http, f"{ADAPTER}-nope", PROMPTS[0])
    assert reply.status_code == 404 and reply.json()["error"]["param"] == "model"
    versioned = complete(served, http, f"{ADAPTER}-v{adapters['first']}", PROMPTS[0])
    assert versioned.status_code == 404  # vLLM's internal name is not a served model


def test_promote_canary_and_rollback_swap_the_adapter_without_restarting_the_engine(
        served, http, adapters):
    from tandem.registry import CHAMPION, alias_version
    from tandem.serve.deploy import current_table

    app = current_table(served)["models"][MODEL]["pools"]["cheap"]["app"]
    before = cheap_replicas(app)

    started = time.perf_counter()
    promoted = tandem("promote", ADAPTER, str(adapters["second"]))
    swap_s = time.perf_counter() - started
    assert promoted.returncode == 0, promoted.stderr
    print(f"\nadapter promote (CLI, from start to traffic on v{adapters['second']}): "
          f"{swap_s:.1f} s")
    # the first requests for a version the engine has not loaded, all at once: it loads once
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: complete(served, http, ADAPTER, PROMPTS[0]), range(8)))
    assert [reply.status_code for reply in replies] == [200] * 8, replies[0].text
    assert {reply.headers["x-tandem-model-version"] for reply in replies} == {
        str(adapters["second"])}
    assert replies[0].json()["model"] == f"{ADAPTER}-v{adapters['second']}"

    canary = tandem("canary", ADAPTER, str(adapters["first"]), "--share", "0.5")
    assert canary.returncode == 0, canary.stderr
    versions = {complete(served, http, ADAPTER, PROMPTS[1]).headers["x-tandem-model-version"]
                for _ in range(16)}
    assert versions == {str(adapters["first"]), str(adapters["second"])}  # 2^-15 to fail
    assert tandem("canary", ADAPTER, "--stop").returncode == 0

    rolled = tandem("rollback", ADAPTER)
    assert rolled.returncode == 0, rolled.stderr
    reply = complete(served, http, ADAPTER, PROMPTS[0])
    assert reply.headers["x-tandem-model-version"] == str(adapters["first"])
    assert alias_version(ADAPTER, CHAMPION, served.mlflow_url) == adapters["first"]
    assert current_table(served)["models"][MODEL]["pools"]["cheap"]["app"] == app
    assert cheap_replicas(app) == before  # the same engine throughout


def test_an_adapter_of_another_base_is_refused_naming_both(served, http, adapters):
    from tandem.auth import ADMIN, client_key
    from tandem.registry import CHAMPION, alias_version

    refused = tandem("promote", ADAPTER, str(adapters["alien"]))
    assert refused.returncode == 2, refused.stderr
    assert "models:/tandem-other/7" in refused.stderr and adapters["base"] in refused.stderr
    assert "Traceback" not in refused.stderr
    assert alias_version(ADAPTER, CHAMPION, served.mlflow_url) == adapters["first"]  # unmoved

    admin = {"authorization": f"Bearer {client_key(served.home, ADMIN)}"}
    reply = requests.post(f"{served.api_url}/admin/promote", headers=admin, timeout=30,
                          json={"model": ADAPTER, "version": adapters["alien"]})
    assert reply.status_code == 400, reply.text
    message = reply.json()["error"]["message"]
    assert "models:/tandem-other/7" in message and adapters["base"] in message
    base_move = requests.post(f"{served.api_url}/admin/promote", headers=admin, timeout=30,
                              json={"model": MODEL, "version": 999})
    assert base_move.status_code == 404  # no such version: checked before the adapters


def test_deploying_an_adapter_of_another_base_exits_2_before_any_engine_starts(
        served, adapters, tmp_path):
    import yaml

    config = adapter_config(f"models:/{ADAPTER}/{adapters['alien']}").model_dump(mode="json")
    path = Path(tmp_path) / "serve.yaml"
    path.write_text(yaml.safe_dump({"applications": [
        {"name": "tandem", "route_prefix": "/", "import_path": "apps.llm_app:build_app",
         "args": config}]}))
    before = set(_serve_apps())
    result = tandem("deploy", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert "models:/tandem-other/7" in result.stderr and adapters["base"] in result.stderr
    assert set(_serve_apps()) == before


def _serve_apps() -> list[str]:
    from ray import serve

    return list(serve.status().applications)

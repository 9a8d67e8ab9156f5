"""Serving overhead: vLLM's own OpenAI server vs stock `ray.serve.llm.build_openai_app`
vs the Tandem endpoint (one pool), same tiny model and engine settings, one run.

16 and 32 concurrent streaming clients, 64 output tokens each (ignore_eos); prints
output tokens/s and median TTFT per server and the ratios to vLLM's server.
Run: `.venv/bin/python -m pytest -s -m "integration" tests/bench/test_serving_throughput.py`
"""

from __future__ import annotations

import asyncio
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
MODEL = "tandem-tiny"
OUTPUT_TOKENS = 64
REQUESTS_PER_STREAM = 4
CONCURRENCY = (16, 32)
ENGINE = {"dtype": "float32", "max_model_len": 128, "max_num_seqs": 32,
          "kv_cache_memory_bytes": 268435456, "enforce_eager": True}


async def _one(client, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    ttft, tokens = None, 0
    body = {"model": MODEL, "prompt": "translate: red cat =>", "max_tokens": OUTPUT_TOKENS,
            "ignore_eos": True, "stream": True, "temperature": 0}
    async with client.stream("POST", f"{url}/v1/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                ttft = ttft or time.perf_counter() - started
                tokens += 1
    return ttft or 0.0, tokens


async def _load(url: str, streams: int, headers: dict) -> tuple[float, float]:
    import httpx

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=streams),
                                 headers=headers) as client:
        await _one(client, url)  # warm-up
        started = time.perf_counter()

        async def stream() -> list[tuple[float, int]]:
            return [await _one(client, url) for _ in range(REQUESTS_PER_STREAM)]

        results = [r for batch in await asyncio.gather(*(stream() for _ in range(streams)))
                   for r in batch]
        elapsed = time.perf_counter() - started
    tokens = sum(count for _, count in results)
    return tokens / elapsed, statistics.median(ttft for ttft, _ in results) * 1000


def _measure(name: str, url: str, table: dict, headers: dict) -> None:
    for streams in CONCURRENCY:
        table[(name, streams)] = asyncio.run(_load(url, streams, headers))


def _wait(url: str, headers: dict, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v1/models", headers=headers, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(url)


def test_serving_overhead(stack, http):
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import Lineage, register_checkpoint, resolve_version
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import connect, deploy, shutdown
    from tandem.stack import free_port

    model_dir = build_tiny_base_model(stack.models_dir / "base" / "tiny")
    try:
        resolve_version(f"models:/{MODEL}@champion", stack.mlflow_url)
    except Exception:
        register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny"), stack.mlflow_url)
    table: dict = {}

    port = free_port()
    vllm = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "float32", "--max-model-len", "128", "--max-num-seqs", "32",
         "--kv-cache-memory-bytes", str(ENGINE["kv_cache_memory_bytes"]), "--enforce-eager"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}", {})
        _measure("vllm", f"http://127.0.0.1:{port}", table, {})
    finally:
        vllm.terminate()
        vllm.wait(60)

    connect(stack)
    stock = LLMConfig(model_loading_config={"model_id": MODEL, "model_source": str(model_dir)},
                      accelerator_config={"kind": "cpu"}, engine_kwargs=ENGINE,
                      placement_group_config={"bundles": [{"CPU": 1, "pool:fast": 1}]},
                      deployment_config={"num_replicas": 1, "autoscaling_config": None})
    serve.run(build_openai_app({"llm_configs": [stock], "ingress_deployment_config": {
        "ray_actor_options": {"num_cpus": 0}}}), name="stock", route_prefix="/")
    try:
        _wait(stack.api_url, {})
        _measure("stock", stack.api_url, table, {})
    finally:
        serve.delete("stock")

    config = load_serve_config(REPO / "apps" / "serve.local.yaml")
    fast = config.pools["fast"].model_copy(update={"engine": config.pools["fast"].engine.model_copy(
        update={"max_num_seqs": 32, "kv_cache_memory_bytes": ENGINE["kv_cache_memory_bytes"],
                "cpu_threads": None})})  # every server's engine gets vLLM's default threads
    deploy(config.model_copy(update={"pools": {"fast": fast}}), stack)
    try:
        auth = {"authorization": f"Bearer {http.api_key}"}
        _wait(stack.api_url, auth)
        _measure("tandem", stack.api_url, table, auth)
    finally:
        shutdown(stack)

    print(f"\n{'server':<8} {'streams':>7} {'tokens/s':>9} {'TTFT ms':>8} {'vs vLLM':>8}")
    for (name, streams), (tps, ttft) in table.items():
        ratio = tps / table[("vllm", streams)][0]
        print(f"{name:<8} {streams:>7} {tps:>9.0f} {ttft:>8.1f} {ratio:>7.2f}x")
    for streams in CONCURRENCY:
        print(f"{streams} streams: tandem/stock = "
              f"{table[('tandem', streams)][0] / table[('stock', streams)][0]:.2f}x")
    assert all(tps > 0 for tps, _ in table.values())

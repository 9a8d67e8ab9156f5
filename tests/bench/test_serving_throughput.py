"""Serving overhead: the Tandem endpoint against vLLM's own OpenAI server, same engine.

For each model (`tandem-tiny`, float32; SmolLM2-135M-Instruct, bf16, the real model), with
the engine settings and core binding of the `fast` pool of its Serve config
(`apps/serve.local.yaml`, `apps/serve.real.yaml`; adapters left out):
1. vLLM's OpenAI server **alone**, before the session's stack starts (run this file in its
   own pytest process: `make bench` does), for the known-figure check;
2. on the stack, a vLLM server beside it, pinned to the same core as the pool, measured in
   rounds that alternate with each server under test: the stock
   `ray.serve.llm.build_openai_app`, Tandem with one pool (`fast`), and Tandem as
   `tandem deploy` serves the config (two pools). Each round's ratio is that round's server
   over that round's vLLM; the table prints the median and the range over the rounds.

The API port is HAProxy's (`tandem.serve.haproxy`), as `tandem up` runs it.
Load (`tests/bench/stream_load.py`, a separate process): 1, 16 and 32 concurrent streaming
clients, 8 completions each (4 with SmolLM2) of 64 tokens (`ignore_eos`). TTFT is the client's time to the
first SSE chunk with text; tokens are `usage.completion_tokens`. The client's CPU share is
printed, to show the load generator was not the bottleneck.
Targets (one pool): tok/s at 16 and 32 streams >= 0.9x vLLM's with tandem-tiny, >= 0.95x
with SmolLM2; TTFT p50 at 1 stream <= vLLM's + 15 ms.
Run: `.venv/bin/python -m pytest -s tests/bench/test_serving_throughput.py`
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
LOAD = Path(__file__).with_name("stream_load.py")
ROUNDS = 3
CONCURRENCY = (1, 16, 32)
TTFT_MARGIN_MS = 15.0
SERVERS = ("stock Ray Serve LLM", "Tandem, 1 pool", "Tandem, 2 pools")


@dataclass(frozen=True)
class BenchModel:
    name: str  # the served model name
    serve_config: str
    throughput_target: float
    requests_per_stream: int
    packaged: str | None = None  # `tandem models import` name; None: the project's tiny model

    def config(self):
        """The model's Serve config without adapters (the baseline serves the base alone)."""
        from tandem.serve.config import ServeAppConfig, load_serve_config

        data = load_serve_config(REPO / self.serve_config, {"adapters": []}).model_dump(
            mode="json")
        for pool in data["pools"].values():
            pool["adapters"] = None
        return ServeAppConfig.model_validate(data)

    def model_dir(self, root: Path) -> Path:
        from tandem.models.packaged import convert_packaged_model
        from tandem.models.tiny import build_tiny_base_model
        from tandem.settings import load_settings

        if self.packaged is None:
            return build_tiny_base_model(root / "tiny")
        return convert_packaged_model(self.packaged, load_settings().model_cache)


# SmolLM2 decodes ~10x slower than the tiny model: 4 completions per stream keep a round
# under a minute.
MODELS = (BenchModel("tandem-tiny", "apps/serve.local.yaml", 0.90, 8),
          BenchModel("smollm2-135m-instruct", "apps/serve.real.yaml", 0.95, 4, "smollm2"))


def _load(url: str, bench: BenchModel, streams: int, api_key: str | None) -> dict:
    command = [sys.executable, str(LOAD), url, "--model", bench.name, "--streams", str(streams),
               "--requests", str(bench.requests_per_stream)]
    if api_key:
        command += ["--api-key", api_key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _round(url: str, bench: BenchModel, api_key: str | None = None) -> dict[int, dict]:
    return {streams: _load(url, bench, streams, api_key) for streams in CONCURRENCY}


def _wait(url: str, headers: dict, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v1/models", headers=headers, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(url)


def _cli_arguments(engine_kwargs: dict) -> list[str]:
    """vLLM server flags for the engine arguments a pool passes to Ray Serve LLM."""
    flags = []
    for key, value in engine_kwargs.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


@contextmanager
def vllm_server(bench: BenchModel, model_dir: Path) -> Iterator[str]:
    """vLLM's own OpenAI server with the `fast` pool's engine and core binding: its URL."""
    from tandem.stack import free_port

    fast = bench.config().pools["fast"].engine
    port = free_port()
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": fast.cpu_threads or "auto"}
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         "--served-model-name", bench.name, "--host", "127.0.0.1", "--port", str(port),
         *_cli_arguments(fast.engine_kwargs())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}", {})
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(60)


@contextmanager
def stock_app(stack, bench: BenchModel, model_dir: Path) -> Iterator[None]:
    """`ray.serve.llm.build_openai_app` with the `fast` pool's engine, node and core."""
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app
    from tandem.serve.deploy import connect

    fast = bench.config().pools["fast"].engine
    connect(stack)
    stock = LLMConfig(model_loading_config={"model_id": bench.name, "model_source": str(model_dir)},
                      accelerator_config={"kind": "cpu"}, engine_kwargs=fast.engine_kwargs(),
                      placement_group_config={"bundles": [{"CPU": 1, "pool:fast": 1}]},
                      runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": fast.cpu_threads}},
                      deployment_config={"num_replicas": 1, "autoscaling_config": None})
    serve.run(build_openai_app({"llm_configs": [stock], "ingress_deployment_config": {
        "ray_actor_options": {"num_cpus": 0}}}), name="stock", route_prefix="/")
    try:
        _wait(stack.api_url, {})
        yield
    finally:
        serve.delete("stock")


@contextmanager
def tandem_app(stack, config, api_key: str) -> Iterator[None]:
    from tandem.serve.deploy import deploy, shutdown

    deploy(config, stack)
    try:
        _wait(stack.api_url, {"authorization": f"Bearer {api_key}"})
        yield
    finally:
        shutdown(stack)


def _register(stack, bench: BenchModel, model_dir: Path) -> None:
    from tandem.models.packaged import import_packaged_model
    from tandem.registry import Lineage, register_checkpoint, resolve_version

    if bench.packaged is not None:
        import_packaged_model(bench.packaged, stack, log=lambda _: None)
        return
    try:
        resolve_version(f"models:/{bench.name}@champion", stack.mlflow_url)
    except Exception:
        register_checkpoint(model_dir, bench.name, Lineage(base_model="tiny"), stack.mlflow_url)


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def _report(bench: BenchModel, alone: list[dict], paired: dict[str, list[tuple[dict, dict]]]):
    print(f"\n{bench.name}: tokens/s median (min) over {ROUNDS} rounds; ratios against the vLLM "
          "server of the same rounds (median, range), and against vLLM alone")
    print(f"{'server':<22} {'streams':>7} {'tok/s':>13} {'TTFT p50':>9} {'client CPU':>10} "
          f"{'vs vLLM (range)':>20} {'vs alone':>8}  target")
    for streams in CONCURRENCY:
        rounds = [r[streams] for r in alone]
        tps = [r["tokens_per_s"] for r in rounds]
        print(f"{'vLLM alone':<22} {streams:>7} {statistics.median(tps):>6.0f} ({min(tps):>4.0f}) "
              f"{_median(rounds, 'ttft_p50_ms'):>7.1f}ms "
              f"{max(r['client_cpu_share'] for r in rounds):>9.0%}")
    for name in ("vLLM beside the stack", *SERVERS):
        for streams in CONCURRENCY:
            if name == "vLLM beside the stack":
                pairs = [(base[streams], base[streams]) for runs in paired.values()
                         for base, _ in runs]
            else:
                pairs = [(base[streams], served[streams]) for base, served in paired[name]]
            served = [s for _, s in pairs]
            tps = [s["tokens_per_s"] for s in served]
            ratios = [s["tokens_per_s"] / b["tokens_per_s"] for b, s in pairs]
            ttft = _median(served, "ttft_p50_ms")
            base_ttft = _median([b for b, _ in pairs], "ttft_p50_ms")
            alone_tps = statistics.median(r[streams]["tokens_per_s"] for r in alone)
            target = ""
            if name == "Tandem, 1 pool" and streams == 1:
                target = f"TTFT <= {base_ttft + TTFT_MARGIN_MS:.0f} ms: " + (
                    "met" if ttft <= base_ttft + TTFT_MARGIN_MS else "NOT met")
            elif name == "Tandem, 1 pool":
                target = f">= {bench.throughput_target:.2f}x: " + (
                    "met" if statistics.median(ratios) >= bench.throughput_target else "NOT met")
            print(f"{name:<22} {streams:>7} {statistics.median(tps):>6.0f} ({min(tps):>4.0f}) "
                  f"{ttft:>7.1f}ms {max(s['client_cpu_share'] for s in served):>9.0%} "
                  f"{statistics.median(ratios):>6.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
                  f"{statistics.median(tps) / alone_tps:>7.2f}x  {target}")


def test_serving_overhead(request, tmp_path):
    from tests.conftest import SESSION_HOME

    assert not (SESSION_HOME / "run").exists(), (
        "the session's stack is already up, so vLLM's server would not run alone: run this "
        "file in its own pytest process (as `make bench` does)")
    model_dirs = {bench.name: bench.model_dir(tmp_path) for bench in MODELS}
    alone = {}
    for bench in MODELS:
        with vllm_server(bench, model_dirs[bench.name]) as url:
            alone[bench.name] = [_round(url, bench) for _ in range(ROUNDS)]

    stack = request.getfixturevalue("stack")
    api_key = request.getfixturevalue("http").api_key
    for bench in MODELS:
        model_dir = model_dirs[bench.name]
        _register(stack, bench, model_dir)
        config = bench.config()
        one_pool = config.model_copy(update={"pools": {"fast": config.pools["fast"]}})
        servers = {"stock Ray Serve LLM": (lambda: stock_app(stack, bench, model_dir), None),
                   "Tandem, 1 pool": (lambda: tandem_app(stack, one_pool, api_key), api_key),
                   "Tandem, 2 pools": (lambda: tandem_app(stack, config, api_key), api_key)}
        paired: dict[str, list[tuple[dict, dict]]] = {}
        with vllm_server(bench, model_dir) as vllm_url:
            for name, (serving, key) in servers.items():
                with serving():
                    paired[name] = [(_round(vllm_url, bench),
                                     _round(stack.api_url, bench, key))
                                    for _ in range(ROUNDS)]
        _report(bench, alone[bench.name], paired)
        assert all(s[n]["tokens_per_s"] > 0 for runs in paired.values() for _, s in runs
                   for n in CONCURRENCY)

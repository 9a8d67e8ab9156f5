"""`tandem promote` and `tandem rollback` under a steady stream of requests: zero failed
requests, long generations in flight at a switch run to their last token (the old version
is drained before it is deleted), and traffic moves to the new version and back.

The stream is paced (two clients, a pause between requests, about 4 requests/s):
on a 2-core machine a saturating closed loop starves the engine the swap starts
(measured: it had not started after 6 min), while a steady stream is what a swap
must survive. The swap's own figures are in the README.

A promotion whose version cannot serve changes nothing: the command says why and exits 2,
the `champion` and `previous` aliases stay, the half-started application is deleted, and
the old version answers every request (a version whose config vLLM refuses at once in
`make test`; one whose weights file is cut short, which fails only once its engine loads
the weights, in `make test-slow`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.integration

MODEL = "tandem-serve"
PAUSE_S = 0.3
LONG = 100  # tokens: with the prompt, near the local pools' 128-token context


# On 2 cores each pool's swap takes 3-5 min under this stream (the new engine shares the
# pool's core with the old one), so promote + rollback take 12-15 min: `make test-slow`.
@pytest.mark.slow
def test_promote_and_rollback_under_load_switch_versions_without_failures(served, registered, http):
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import CHAMPION, PREVIOUS, Lineage, alias_version, register_checkpoint

    model_dir = build_tiny_base_model(served.models_dir / "base" / "tiny")
    new_version = register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny", trigger="test"),
                                      served.mlflow_url)
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.wait(PAUSE_S):
            try:
                reply = http.post(f"{served.api_url}/v1/completions", timeout=60, json={
                    "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 8})
                results.append((reply.status_code, reply.headers.get("x-tandem-model-version", "")))
            except requests.RequestException as error:
                results.append((0, type(error).__name__))

    def tandem(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tandem.cli", *args, "--timeout", "900"],
                              capture_output=True, text=True, timeout=960, env=os.environ.copy())

    def long_streams() -> None:  # generations that outlive the switch: the drain waits for them
        while not stop.wait(PAUSE_S):
            try:
                with http.post(f"{served.api_url}/v1/completions", timeout=120, stream=True, json={
                        "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": LONG,
                        "stream": True, "ignore_eos": True,
                        "stream_options": {"include_usage": True}}) as reply:
                    tokens, cut = None, None
                    for line in reply.iter_lines(decode_unicode=True):
                        if line.startswith('data: {"error"'):
                            cut = line
                        elif line.startswith("data: {") and '"usage":{' in line.replace(" ", ""):
                            usage = json.loads(line[len("data: "):]).get("usage")
                            tokens = usage and usage["completion_tokens"]
                    streams.append((reply.status_code, tokens, cut))
            except requests.RequestException as error:
                streams.append((0, None, type(error).__name__))

    streams: list[tuple[int, int | None, str | None]] = []
    workers = [threading.Thread(target=load) for _ in range(2)]
    workers.append(threading.Thread(target=long_streams))
    for worker in workers:
        worker.start()
    try:
        promote = tandem("promote", MODEL, str(new_version))
        time.sleep(2)
        promoted = len(results)
        rollback = tandem("rollback", MODEL) if promote.returncode == 0 else None
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    drains = [line for line in (promote.stdout + (rollback.stdout if rollback else "")).splitlines()
              if "drain" in line]
    print(f"{len(results)} short requests, {len(streams)} long streams; " + "; ".join(drains))
    assert promote.returncode == 0, promote.stderr[-2000:]
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    failures = [result for result in results if result[0] != 200]
    assert not failures, failures[:5]
    # every long stream in flight during the swaps ran to its last token
    assert streams and all(stream == (200, LONG, None) for stream in streams), streams
    assert "drained in" in promote.stdout and "drained in" in rollback.stdout
    versions = [version for _, version in results]
    assert versions[0] == str(registered)
    assert versions[promoted - 1] == str(new_version)  # promoted: traffic on the new version
    assert versions[-1] == str(registered)  # rolled back
    assert alias_version(MODEL, CHAMPION, served.mlflow_url) == registered
    assert alias_version(MODEL, PREVIOUS, served.mlflow_url) == new_version
    models = http.get(f"{served.api_url}/v1/models", timeout=10).json()["data"]
    assert models[0]["version"] == str(registered)


def _tandem(*args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], capture_output=True,
                          text=True, timeout=timeout_s + 60, env=os.environ.copy())


def _register_tiny_copy(served, name: str, config: dict | None = None) -> int:
    """A new version of MODEL: the tiny base model, with `config` fields changed."""
    import shutil

    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import Lineage, register_checkpoint

    model_dir = served.home / "promote-tests" / name
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(build_tiny_base_model(served.models_dir / "base" / "tiny"), model_dir)
    if config:
        path = model_dir / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny", trigger=name),
                               served.mlflow_url)


def _stored_files(served, version: int):
    """The directory where the MLflow server keeps `version`'s model files."""
    from tandem.registry import mlflow_client

    client = mlflow_client(served.mlflow_url)
    source = client.get_model_version(MODEL, str(version)).source  # models:/m-...
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    return served.home / "mlflow" / "artifacts" / location.removeprefix("mlflow-artifacts:/")


def _promote_changes_nothing(served, http, version: int) -> str:
    """`tandem promote MODEL version` fails with exit 2, and the aliases, the route table, the
    Serve applications and the version answering requests are what they were; returns its
    stderr. Whatever it changed is put back afterwards, so the session's other tests run on."""
    from ray import serve
    from tandem.registry import CHAMPION, PREVIOUS, alias_version, mlflow_client
    from tandem.serve.deploy import current_table

    url = served.mlflow_url
    aliases = {alias: alias_version(MODEL, alias, url) for alias in (CHAMPION, PREVIOUS)}
    entry = current_table(served)["models"][MODEL]
    apps = set(serve.status().applications)
    started = time.monotonic()
    try:
        result = _tandem("promote", MODEL, str(version), "--timeout", "600")
        print(f"failed promote of v{version}: exit {result.returncode} after "
              f"{time.monotonic() - started:.0f} s\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        assert result.returncode == 2, result.stderr[-3000:]
        assert {alias: alias_version(MODEL, alias, url) for alias in aliases} == aliases
        assert current_table(served)["models"][MODEL] == entry
        assert set(serve.status().applications) == apps  # the half-started one is gone
        for _ in range(6):
            reply = http.post(f"{served.api_url}/v1/completions", timeout=60, json={
                "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 4})
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-tandem-model-version"] == str(aliases[CHAMPION])
        return result.stderr
    finally:
        client = mlflow_client(url)
        for alias, was in aliases.items():
            if alias_version(MODEL, alias, url) != was:
                if was is None:
                    client.delete_registered_model_alias(MODEL, alias)
                else:
                    client.set_registered_model_alias(MODEL, alias, str(was))
        for app in set(serve.status().applications) - apps:
            serve.delete(app, _blocking=True)


def test_a_promote_whose_version_vllm_refuses_changes_nothing(served, http):
    # trained for a 64-token context, while the pools serve 128: vLLM refuses it at once
    version = _register_tiny_copy(served, "short-context", {"max_position_embeddings": 64})
    stderr = _promote_changes_nothing(served, http, version)
    assert f"tandem promote: cannot serve {MODEL} v{version}" in stderr
    assert "max_model_len" in stderr and "`champion` stays on" in stderr


@pytest.mark.slow
def test_a_promote_whose_weights_file_is_cut_short_changes_nothing(served, http):
    version = _register_tiny_copy(served, "cut-weights")
    weights = next(_stored_files(served, version).rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    stderr = _promote_changes_nothing(served, http, version)
    assert f"tandem promote: cannot serve {MODEL} v{version}" in stderr
    assert "`champion` stays on" in stderr

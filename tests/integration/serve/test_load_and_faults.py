"""Short load and fault runs on the live stack (the long ones are in `make bench`):
streaming clients get no 5xx and every request is logged once; serving goes on while
MLflow is down."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from tandem.serve.loadgen import Stream, run_load

pytestmark = pytest.mark.integration

MODEL = "tandem-serve"


def _logged(served, request_ids: set[str]) -> int:
    from tandem.telemetry.request_log import read_requests

    time.sleep(4)  # the request log flushes every 2 s
    rows = read_requests(served.home / "telemetry").column("request_id").to_pylist()
    return sum(1 for request_id in rows if request_id in request_ids)


def test_streaming_clients_get_no_5xx_and_every_request_is_logged_once(served, http):
    results = run_load(served.api_url, [Stream("standard", 16, 16)], duration_s=20, model=MODEL,
                       api_key=http.api_key)
    statuses = sorted({r.status for r in results})
    assert statuses == [200], [r for r in results if r.status != 200][:5]
    ids = {r.request_id for r in results}
    assert len(ids) == len(results)
    assert _logged(served, ids) == len(results)
    ttfts = sorted(r.ttft_ms for r in results if r.ttft_ms is not None)
    print(f"\n16 streaming clients, 20 s: {len(results)} requests, TTFT p50 "
          f"{statistics.median(ttfts):.0f} ms, p99 {ttfts[int(0.99 * (len(ttfts) - 1))]:.0f} ms")


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

"""Short load and fault runs on the live stack (the long ones are in `make bench`):
streaming clients get no 5xx and every request is logged once; serving goes on while MLflow
is down. (A client that hangs up: `test_real_model.py`, where a generation outlasts the
hang-up's way to the engine.)"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from tandem.serve.loadgen import Stream, run_load

from .conftest import LOAD_KEY, logged_rows

pytestmark = pytest.mark.integration

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

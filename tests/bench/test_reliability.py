"""The long load run on the local two-pool stack: 64 streaming clients for 60 s with
the shipped queue limits (64 waiting per pool replica, so 36 batch slots + 128 queued hold
the load) -> no 5xx, and the request log has exactly one row per request sent. Prints the
TTFT percentiles. (The short versions run in `make test`: serve/test_load_and_faults.py;
the kill-a-replica run is `make test-slow`: serve/test_routing_live.py.)
Run: `.venv/bin/python -m pytest -s -m integration tests/bench/test_reliability.py`
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"
CLIENTS = 64
DURATION_S = 60


def test_64_streaming_clients_for_60_s(stack, registered, http):
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown
    from tandem.serve.loadgen import Stream, run_load
    from tandem.telemetry.request_log import read_requests

    deploy(load_serve_config(REPO / "apps" / "serve.local.yaml",
                             {"model": f"models:/{MODEL}@champion"}), stack, log=lambda _: None)
    try:
        started = time.monotonic()
        results = run_load(stack.api_url, [Stream("standard", 32, CLIENTS)], DURATION_S,
                           model=MODEL, api_key=http.api_key)
        elapsed = time.monotonic() - started
        time.sleep(4)  # the request log flushes every 2 s
        ids = {r.request_id for r in results}
        logged = sum(1 for request_id in read_requests(stack.home / "telemetry")
                     .column("request_id").to_pylist() if request_id in ids)
    finally:
        shutdown(stack, log=lambda _: None)
    statuses = {status: sum(r.status == status for r in results) for status in
                sorted({r.status for r in results})}
    ttfts = sorted(r.ttft_ms for r in results if r.ttft_ms is not None)
    print(f"\n{CLIENTS} streaming clients, {elapsed:.0f} s: {len(results)} requests, statuses "
          f"{statuses}, logged {logged}, TTFT p50 {statistics.median(ttfts):.0f} ms, p99 "
          f"{ttfts[int(0.99 * (len(ttfts) - 1))]:.0f} ms, "
          f"{sum(r.tokens for r in results) / elapsed:.0f} output tokens/s")
    assert all(status < 500 and status != 0 for status in statuses), statuses
    assert logged == len(results)

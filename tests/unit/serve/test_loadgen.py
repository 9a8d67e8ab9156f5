"""The open-loop load generator against a real HTTP server that answers slowly: requests
keep arriving at the offered rate however long the answers take."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tandem.serve.loadgen import Stream, run_open_load

ANSWER_S = 0.5  # each answer takes this long, far more than the gap between arrivals


class _SlowEngine(BaseHTTPRequestHandler):
    """A streaming completions endpoint: two tokens, the second ANSWER_S after the first."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("x-tandem-pool", "fast")
        self.end_headers()
        chunk = json.dumps({"choices": [{"text": "a"}]})
        for pause in (0.0, ANSWER_S):
            time.sleep(pause)
            self.wfile.write(f"data: {chunk}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def slow_engine():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_arrive_at_the_offered_rate_whatever_the_latency(slow_engine):
    rate, duration = 20.0, 2.0
    streams = [Stream("interactive", 2, 1), Stream("batch", 2, 2)]
    results = run_open_load(slow_engine, streams, rate, duration, model="m", api_key="k", seed=3)
    # a Poisson draw around rate x duration; a closed loop of 3 clients would send ~12
    assert 25 <= len(results) <= 55
    assert all(result.status == 200 and result.tokens == 2 for result in results)
    assert all(result.tpot_ms >= ANSWER_S * 1e3 * 0.9 for result in results)
    sent = sorted(result.started_at for result in results)
    assert sent[-1] - sent[0] < duration  # the last was sent on time, not after the answers
    # the tiers in turn, weighted by clients: interactive, batch, batch, interactive, ...
    assert [result.tier for result in results[:6]] == ["interactive", "batch", "batch"] * 2
    again = run_open_load(slow_engine, streams, rate, duration, model="m", api_key="k", seed=3)
    assert len(again) == len(results)  # the seed fixes the arrivals

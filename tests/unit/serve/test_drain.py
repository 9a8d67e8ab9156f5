"""A retired version is deleted once the ingress holds nothing on it, or at its timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from tandem.serve.config import load_serve_config
from tandem.serve.drain import DRAIN_FLOOR_S, DRAIN_MARGIN, drain_timeout_s, wait_drained
from tandem.serve.routes import RouteTable

LOCAL = Path(__file__).resolve().parents[3] / "apps" / "serve.local.yaml"


def test_the_drain_timeout_covers_the_longest_generation_at_the_measured_tpot():
    config = load_serve_config(LOCAL)
    longest = config.pools["cheap"].engine.max_model_len
    assert drain_timeout_s(config, "cheap", 200.0) == pytest.approx(DRAIN_MARGIN * longest * 0.2)
    assert drain_timeout_s(config, "cheap", None) == DRAIN_FLOOR_S  # the 10 ms prior: short
    fixed = load_serve_config(LOCAL, {"drain_timeout_s": 42})
    assert drain_timeout_s(fixed, "cheap", 200.0) == 42


def test_waiting_ends_when_nothing_is_in_flight_or_at_the_timeout():
    reports = iter([None, 2, 1, 0])
    assert wait_drained(lambda: next(reports), timeout_s=5, poll_s=0.01) == (True, 0)
    assert wait_drained(lambda: 1, timeout_s=0.05, poll_s=0.01) == (False, 1)


def test_in_flight_counts_only_reports_made_after_the_switch():
    table = RouteTable()
    table.ack("ingress-1", 3, {"old-app": 2})
    table.ack("ingress-2", 4, {"old-app": 1, "new-app": 5})
    assert table.in_flight("old-app", 4) is None  # ingress-1 has not applied the switch yet
    table.ack("ingress-1", 4, {"old-app": 1})
    assert table.in_flight("old-app", 4) == 2
    table.ack("ingress-1", 4, {})
    table.ack("ingress-2", 5, {"new-app": 5})
    assert table.in_flight("old-app", 4) == 0


def test_the_measured_tpot_is_the_last_hours_p99_per_pool(tmp_path):
    import time

    from tandem.serve.drain import measured_tpot_ms
    from tandem.telemetry.request_log import RequestLog

    from tests.unit.telemetry.helpers import request

    log = RequestLog(tmp_path, flush_rows=1000)
    now = time.time()
    for index in range(100):
        log.append(request(f"new-{index}", now - 60, pool="fast", tpot_ms=float(index + 1)))
        log.append(request(f"old-{index}", now - 7200, pool="fast", tpot_ms=1000.0))
        log.append(request(f"cut-{index}", now - 60, pool="cheap", tpot_ms=1000.0, status=520))
    log.close()
    assert measured_tpot_ms(str(tmp_path)) == {"fast": pytest.approx(99.01)}

"""The real Prometheus (`tandem observe`) on the running stack: it scrapes every Ray node,
counts exactly the requests the request log books, evaluates every recording rule to a
value consistent with the traffic, loads every alert rule without error, and answers
every expression of the Grafana dashboard."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import MODEL, REPO, logged_rows

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "tandem.json"


def query(url: str, expr: str) -> list[dict]:
    reply = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = reply.json()
    assert reply.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


def scalar(url: str, expr: str) -> float | None:
    result = query(url, expr)
    return float(result[0]["value"][1]) if result else None


def wait_for(check, timeout_s: float = 90.0, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)


@pytest.fixture(scope="module")
def prometheus(served):
    from tandem import stack

    started = subprocess.run([str(Path(sys.executable).with_name("tandem")), "observe"],
                             capture_output=True, text=True, env=os.environ, timeout=180)
    assert started.returncode == 0, started.stderr
    assert served.prometheus_url in started.stdout
    try:
        yield served.prometheus_url
    finally:
        assert stack.stop(served, stack.prometheus_service(served))


def test_status_lists_prometheus_and_it_scrapes_every_ray_node(served, prometheus):
    from tandem import stack

    [row] = [row for row in stack.status(served) if row["service"] == "prometheus"]
    assert row["healthy"] and row["url"] == prometheus
    nodes = len(stack.alive_raylets(served))
    assert wait_for(lambda: scalar(prometheus, 'count(up{job="ray"} == 1)') == nodes), \
        query(prometheus, 'up{job="ray"}')


def _send(served, http, ids: list[str]) -> None:
    for number, request_id in enumerate(ids):
        reply = http.post(f"{served.api_url}/v1/completions", timeout=60,
                          headers={"x-request-id": request_id, "x-tandem-tier": "interactive"},
                          json={"model": MODEL, "prompt": "translate: red cat =>",
                                "max_tokens": 8, "stream": number % 2 == 0})
        assert reply.status_code == 200, reply.text


def test_request_counters_match_the_request_log_and_the_rules_agree(served, http, prometheus):
    total = f'sum(ray_tandem_requests_total{{model="{MODEL}"}})'
    # Prometheus counts no increase into a series' first sample: make sure every series the
    # burst touches exists (and has been scraped) before it
    _send(served, http, [f"prom-warm-{uuid.uuid4().hex[:8]}" for _ in range(4)])

    def settled():  # the same count 25 s apart: longer than Ray's 10 s export plus a scrape,
        first = scalar(prometheus, total)  # so nothing sent before is still on its way
        time.sleep(25)
        return first if first and first == scalar(prometheus, total) else None

    before = wait_for(settled, timeout_s=180, every_s=0)
    assert before
    ids = [f"prom-{uuid.uuid4().hex[:12]}" for _ in range(12)]
    _send(served, http, ids)
    assert len(logged_rows(served, set(ids))) == len(ids)
    after = wait_for(lambda: scalar(prometheus, total) == before + len(ids), timeout_s=90)
    assert after, (before, scalar(prometheus, total))  # exactly the booked requests

    def rule(expr: str, consistent) -> dict[tuple, float]:
        """The rule's samples by labels, once they agree with the burst (rules evaluate
        every 5 s on what was scraped: the first answers may predate it)."""
        def samples():
            found = {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")):
                     float(s["value"][1]) for s in query(prometheus, expr)}
            return found if found and consistent(found) else None
        found = wait_for(samples, timeout_s=60)
        assert found, (expr, query(prometheus, expr))
        return found

    # 12 requests in the last 5 minutes: at least that many per 300 s (rate extrapolates)
    rule("tandem:requests:rate5m", lambda r: sum(r.values()) * 300 >= len(ids) * 0.9)
    rent = rule("tandem:rent_usd_per_hour", lambda r: len(r) == 2)
    assert {dict(k)["pool"]: v for k, v in rent.items()} == {
        "fast": pytest.approx(0.40), "cheap": pytest.approx(0.10)}  # 1 replica each
    for latency in ("ttft", "tpot"):
        answered = lambda r: any(math.isfinite(v) and v > 0 for v in r.values())  # noqa: E731
        p50 = rule(f"tandem:{latency}_seconds:p50", answered)
        p99 = rule(f"tandem:{latency}_seconds:p99", answered)
        finite = [key for key in p50 if math.isfinite(p50[key])]  # NaN: no request lately
        assert finite and all(0 < p50[key] <= p99[key] for key in finite), (p50, p99)
    attainment = rule("tandem:slo_attainment:ratio_rate5m",
                      lambda r: (("tier", "interactive"),) in r)
    assert all(0 <= v <= 1 for v in attainment.values()), attainment
    spend = rule("tandem:tier_spend_usd_per_hour", lambda r: r.get((("tier", "interactive"),), 0) > 0)
    assert spend.get((("tier", "interactive"),), 0) > 0, spend
    assert {s["metric"]["pool"]: float(s["value"][1])
            for s in query(prometheus, "max by (pool) (ray_tandem_pool_up)")} == {
        "fast": 1.0, "cheap": 1.0}


def test_every_rule_loads_and_every_dashboard_expression_evaluates(prometheus):
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 13
    assert [(rule["name"], rule.get("lastError")) for rule in rules
            if rule["health"] == "err"] == []
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [inner for panel in dashboard["panels"] for inner in (panel, *panel.get("panels", ()))]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", ())]
    assert len(exprs) >= 15
    for expr in exprs:
        query(prometheus, expr)  # asserts status success: no parse or evaluation error

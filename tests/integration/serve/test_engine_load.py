"""The router sees each real vLLM engine's batch under a second old: the stat-logger plugin
in the pool replica reports through the shared view, `/admin/routes` shows what the
ingress holds, and a request in flight shows up as a running request of its pool's engine."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from .conftest import MODEL

pytestmark = pytest.mark.integration


def _engines(served, admin) -> dict[str, dict]:
    """Deployment -> what the ingress holds of its engine's last report."""
    reply = requests.get(f"{served.api_url}/admin/routes?last=0", headers=admin, timeout=30)
    assert reply.status_code == 200, reply.text
    return {report["deployment"]: report for report in reply.json()["engines"]}


def test_the_router_sees_each_engines_batch_under_a_second_old(served, http):
    from tandem.auth import ADMIN, client_key
    from tandem.serve.engine_load import MAX_AGE_S

    admin = {"authorization": f"Bearer {client_key(served.home, ADMIN)}"}
    routes = requests.get(f"{served.api_url}/admin/routes", headers=admin,
                          timeout=30).json()["models"][MODEL]["pools"]
    answered: dict[str, str] = {}  # pool -> its deployment, once it answered a stream

    def stream(tier: str) -> None:
        body = {"model": MODEL, "prompt": "translate: engine =>", "max_tokens": 120,
                "ignore_eos": True, "stream": True, "temperature": 0}
        with http.post(f"{served.api_url}/v1/completions", json=body, stream=True, timeout=120,
                       headers={"x-tandem-tier": tier}) as reply:
            assert reply.status_code == 200, reply.text
            pool = reply.headers["x-tandem-pool"]
            answered[pool] = routes[pool]["deployment"]
            for _ in reply.iter_lines():
                pass

    # a stream of 120 tokens runs for a while: its engine reports a running request meanwhile
    busy_seen: set[str] = set()
    clients = [threading.Thread(target=stream, args=(tier,))
               for tier in ("interactive", "batch", "batch")]
    for client in clients:
        client.start()
    deadline = time.monotonic() + 60
    while any(client.is_alive() for client in clients) and time.monotonic() < deadline:
        for deployment, report in _engines(served, admin).items():
            if report["running"] >= 1 and report["age_s"] < MAX_AGE_S:
                busy_seen.add(deployment)
        time.sleep(0.2)
    for client in clients:
        client.join(timeout=60)
    assert answered and set(answered.values()) <= busy_seen, (answered, busy_seen)

    # idle, the engines keep reporting: what the router holds stays under a second old
    time.sleep(2)
    for _ in range(5):
        engines = _engines(served, admin)
        for deployment in answered.values():
            report = engines[deployment]
            assert 0 <= report["age_s"] < MAX_AGE_S, report
            assert report["running"] == 0 and report["waiting"] == 0, report
            assert 0.0 <= report["kv_cache_usage"] <= 1.0
        time.sleep(0.3)

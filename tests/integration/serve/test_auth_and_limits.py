"""Keys, rate limits and queue limits on the live ingress (the served fixture adds a
tenant key limited to 3 requests then one per 2 s, and caps each pool's queue at 8)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import listening_sockets

from .conftest import LIMITED_KEY, MAX_QUEUED, REPO

pytestmark = pytest.mark.integration

MODEL = "tandem-serve"


def _endpoints(prefix: str = "/") -> list[tuple[str, str]]:
    from fastapi.routing import APIRoute
    from tandem.serve.ingress import app

    return sorted((method, route.path.replace("{model:path}", MODEL))
                  for route in app.routes if isinstance(route, APIRoute)
                  and route.path != "/healthz" and route.path.startswith(prefix)
                  for method in route.methods)


def test_the_ingress_has_inference_and_admin_endpoints():
    paths = {path for _, path in _endpoints()}
    assert {"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/feedback",
            "/admin/promote", "/admin/rollback", "/admin/routes"} <= paths


@pytest.mark.parametrize("method, path", _endpoints())
def test_every_endpoint_but_healthz_refuses_a_missing_or_unknown_key(served, method, path):
    for headers in ({}, {"authorization": "Bearer tdm-not-a-key"}, {"authorization": "Basic eA=="}):
        reply = requests.request(method, f"{served.api_url}{path}", headers=headers, json={},
                                 timeout=30)
        assert reply.status_code == 401, (headers, reply.text)
        assert reply.json()["error"]["type"] == "authentication_error"
        assert reply.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path", _endpoints("/admin"))
def test_admin_endpoints_refuse_an_inference_key(served, http, method, path):
    reply = http.get(f"{served.api_url}{path}", timeout=30) if method == "GET" else \
        http.post(f"{served.api_url}{path}", json={"model": MODEL, "version": 1}, timeout=30)
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["type"] == "permission_error"


def test_healthz_and_metrics_need_no_key(served):
    import ray
    from tandem.serve.deploy import connect

    assert requests.get(f"{served.api_url}/healthz", timeout=5).status_code == 200
    connect(served)
    node = next(n for n in ray.nodes() if n["Alive"])
    metrics = requests.get(f"http://127.0.0.1:{node['MetricsExportPort']}/metrics", timeout=10)
    assert metrics.status_code == 200 and "ray_" in metrics.text


def test_the_only_ports_beyond_loopback_are_serve_replicas_that_require_ray_token(served):
    """Ray Serve 2.60 binds each replica's inter-deployment gRPC server to every interface
    (a hard-coded `[::]:0`, ray-project/ray#64544); every other port of the stack is on
    loopback (`test_stack.py`): HAProxy's API, stats and Prometheus frontends and the
    replicas' own HTTP ports included. The gRPC servers refuse a call without the token."""
    import grpc
    from tandem.settings import is_loopback, ray_token_file
    from tandem.stack import haproxy_pid, processes

    listening = listening_sockets(processes(served))
    haproxy = {(address, port) for address, port, process in listening
               if process.name() == "haproxy"}
    assert {(served.host, port) for port in (served.api_port, served.haproxy_stats_port,
                                             served.haproxy_metrics_port)} <= haproxy, haproxy
    status = subprocess.run([sys.executable, "-m", "tandem.cli", "status"], capture_output=True,
                            text=True, timeout=60)
    assert f"{haproxy_pid(served)}  {served.api_url} (stats" in status.stdout, status.stdout
    replica_http = [port for address, port, process in listening
                    if process.name().startswith("ray::ServeRepli") and 30000 <= port <= 31000]
    assert replica_http, "no replica listens on a direct-ingress HTTP port"
    exposed = [(port, process) for address, port, process in listening
               if not is_loopback(address)]
    print(f"\nports beyond loopback: {len(exposed)} (Serve replicas' gRPC servers)")
    token = ray_token_file(served).read_text().strip()
    for port, process in exposed:
        assert process.name().startswith("ray::ServeRepli"), process.cmdline()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            handle_request = channel.unary_unary("/ray.serve.ASGIService/HandleRequest")
            with pytest.raises(grpc.RpcError) as without_token:
                handle_request(b"", timeout=10)
            with pytest.raises(grpc.RpcError) as with_token:  # an empty request: refused later
                handle_request(b"", timeout=10, metadata=[("authorization", f"Bearer {token}")])
        assert without_token.value.code() == grpc.StatusCode.UNAUTHENTICATED, port
        assert with_token.value.code() != grpc.StatusCode.UNAUTHENTICATED, port


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not(served, http):
    limited = {"authorization": f"Bearer {LIMITED_KEY['key']}"}
    replies = [requests.get(f"{served.api_url}/v1/models", headers=limited, timeout=10)
               for _ in range(LIMITED_KEY["burst"] + 2)]
    statuses = [reply.status_code for reply in replies]
    assert statuses[:LIMITED_KEY["burst"]] == [200] * LIMITED_KEY["burst"], statuses
    refused = replies[-1]
    assert refused.status_code == 429, statuses
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert http.get(f"{served.api_url}/v1/models", timeout=10).status_code == 200
    time.sleep(int(refused.headers["retry-after"]))
    assert requests.get(f"{served.api_url}/v1/models", headers=limited, timeout=10).ok


def _limited_run(url: str, duration_s: float, gap_s: float = 0.25) -> tuple[int, int]:
    """(requests admitted, index of the first 429) for the limited key calling `url`
    every `gap_s` for `duration_s`, after its bucket has refilled."""
    limited = {"authorization": f"Bearer {LIMITED_KEY['key']}"}
    time.sleep(LIMITED_KEY["burst"] / LIMITED_KEY["requests_per_s"] + 1)
    statuses = []
    started = time.monotonic()
    while time.monotonic() - started < duration_s:
        statuses.append(requests.get(url, headers=limited, timeout=10).status_code)
        time.sleep(gap_s)
    assert set(statuses) <= {200, 429}, statuses
    return statuses.count(200), statuses.index(429) if 429 in statuses else len(statuses)


def test_two_ingress_replicas_hold_one_rate_limit_within_the_stated_bound(served):
    """A second ingress application with 2 replicas on the same pools: the limited key
    (3, then 0.5/s) gets its first 429 and its admissions where one replica gives them,
    within burst + rate x 1 s (per replica beyond the first; README "Fair use"). Without a
    shared view each replica would hold its own bucket: twice the burst and the rate."""
    import ray
    from ray import serve
    from tandem.serve import routes as route_table
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import build_ingress_application

    config = load_serve_config(REPO / "apps" / "serve.local.yaml", {"ingress_replicas": 2})
    table = ray.get(route_table.lookup().snapshot.remote(0))[1]
    serve.run(build_ingress_application(config, table), name="tandem-two-ingress",
              route_prefix="/two")
    try:
        duration_s, rate, burst = 10.0, LIMITED_KEY["requests_per_s"], LIMITED_KEY["burst"]
        one = _limited_run(f"{served.api_url}/v1/models", duration_s)
        two = _limited_run(f"{served.api_url}/two/v1/models", duration_s)
        print(f"admitted, first 429: one replica {one}, two replicas {two}")
        bound = burst + rate * 1.0
        assert one[1] == burst, one
        assert burst <= two[1] <= one[1] + bound, (one, two)
        assert two[0] <= burst + rate * duration_s + bound, (one, two)
        assert two[0] >= one[0] - 1, (one, two)  # the shared bucket does not under-admit
    finally:
        serve.delete("tandem-two-ingress")


def test_past_every_pools_queue_requests_get_503_with_retry_after_and_nothing_else_fails(
        served, http):
    slots = 32 + 4  # batch slots of `fast` and `cheap`
    burst = slots + 2 * MAX_QUEUED + 40

    def one(_):
        return http.post(f"{served.api_url}/v1/completions", timeout=300, json={
            "model": MODEL, "prompt": "translate: red cat =>", "max_tokens": 64,
            "ignore_eos": True})

    with concurrent.futures.ThreadPoolExecutor(burst) as pool:
        replies = list(pool.map(one, range(burst)))
    statuses = [reply.status_code for reply in replies]
    print(f"\n{burst} simultaneous requests: {statuses.count(200)} x 200, "
          f"{statuses.count(503)} x 503")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= slots, statuses
    refused = next(reply for reply in replies if reply.status_code == 503)
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert int(refused.headers["retry-after"]) >= 1


def test_admin_key_reads_routes_and_promotes_through_a_ray_job(served, registered):
    from ray.job_submission import JobSubmissionClient
    from tandem.auth import ADMIN, client_key

    admin = {"authorization": f"Bearer {client_key(served.home, ADMIN)}"}
    routes = requests.get(f"{served.api_url}/admin/routes?last=5", headers=admin, timeout=30)
    assert routes.status_code == 200, routes.text
    assert routes.json()["models"][MODEL]["version"] == registered
    assert len(routes.json()["decisions"]) <= 5

    for body, status, param in [({"model": MODEL}, 400, "version"),
                                ({"model": MODEL, "version": "2"}, 400, "version"),
                                ({"model": MODEL, "version": 1, "force": True}, 400, "force"),
                                ({"model": "nope", "version": 1}, 404, "model"),
                                ({"model": MODEL, "version": 999}, 404, "version")]:
        reply = requests.post(f"{served.api_url}/admin/promote", json=body, headers=admin,
                              timeout=30)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["error"]["param"] == param

    reply = requests.post(f"{served.api_url}/admin/promote", headers=admin, timeout=30,
                          json={"model": MODEL, "version": registered})  # a no-op swap
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    jobs = JobSubmissionClient(served.dashboard_url)
    deadline = time.monotonic() + 300
    while str(jobs.get_job_status(job_id)) not in ("JobStatus.SUCCEEDED", "JobStatus.FAILED",
                                                   "SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, jobs.get_job_logs(job_id)
        time.sleep(2)
    assert "SUCCEEDED" in str(jobs.get_job_status(job_id)), jobs.get_job_logs(job_id)
    assert f"champion v{registered} now serving" in jobs.get_job_logs(job_id)

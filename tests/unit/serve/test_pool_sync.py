"""How the ingress reads running replicas from Serve's instance details."""

from __future__ import annotations

import enum

from tandem.serve.ingress.pool_sync import judge_pools, running_replicas


class _State(enum.Enum):  # Serve's details hold its ReplicaState enum, or plain strings
    RUNNING = "RUNNING"
    STARTING = "STARTING"


def test_running_replicas_counts_only_running_ones_per_app_and_deployment():
    details = {"applications": {
        "tandem-tiny-fast-v1-abc": {"deployments": {"fast-v1:tandem-tiny": {"replicas": [
            {"state": _State.RUNNING}, {"state": _State.STARTING}, {"state": "RUNNING"}]}}},
        "tandem-tiny-cheap-v1-def": {"deployments": {"cheap-v1:tandem-tiny": {"replicas": [
            {"state": _State.STARTING}]}}},
        "empty": {"deployments": {}},
    }}
    assert running_replicas(details) == {
        ("tandem-tiny-fast-v1-abc", "fast-v1:tandem-tiny"): 2,
        ("tandem-tiny-cheap-v1-def", "cheap-v1:tandem-tiny"): 0,
    }
    assert running_replicas({}) == {}


def test_a_pool_without_running_replicas_is_down_unless_it_may_scale_to_zero():
    from tandem.serve.config import load_serve_config
    from tandem.serve.router import PoolRouter

    from tests.unit.serve.test_router import LOCAL, route

    router = PoolRouter(load_serve_config(LOCAL), None)
    table = {"models": {"m": {"version": 1, "pools": {
        "fast": route("fast", 0.40), "cheap": {**route("cheap", 0.10), "cold_start_s": 60.0}}}}}
    running = {("tandem-fast", "llm-fast"): 0, ("tandem-cheap", "llm-cheap"): 0}
    rent = judge_pools(table, running, router, 5.0)
    assert router.down == {"fast"}  # cheap is cold, not dead
    assert rent == {"fast": (0.40, 0), "cheap": (0.10, 0)}
    judge_pools(table, {**running, ("tandem-cheap", "llm-cheap"): 2}, router, 6.0)
    assert router.running["cheap"] == 2

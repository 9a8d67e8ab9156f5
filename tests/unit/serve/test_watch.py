"""How the ingress reads running replicas from Serve's instance details."""

from __future__ import annotations

import enum

from tandem.serve.ingress.watch import running_replicas


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

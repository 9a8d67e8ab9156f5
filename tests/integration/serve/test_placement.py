"""Each pool's replicas run on that pool's own Ray node; Prometheus metrics are exported."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration


def test_pool_replicas_run_on_their_own_node(served):
    import ray
    from ray.util.state import list_actors
    from tandem.settings import pool_resource

    node_pool = {}
    for node in ray.nodes():
        for pool in served.local_pools:
            if node["Alive"] and pool_resource(pool) in node["Resources"]:
                node_pool[node["NodeID"]] = pool
    assert sorted(node_pool.values()) == sorted(served.local_pools)
    seen = {}
    for actor in list_actors(address=served.dashboard_url, filters=[("state", "=", "ALIVE")],
                             limit=1000):
        name = actor.name or ""
        app = re.match(r"SERVE_REPLICA::tandem-serve-(\w+)-v\d+-\w+#", name)
        if app:
            seen[app[1]] = node_pool.get(actor.node_id)
    assert seen == {pool: pool for pool in served.local_pools}

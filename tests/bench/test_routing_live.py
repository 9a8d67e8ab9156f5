"""Live routing on the local two-pool stack: the Tandem policy vs round-robin vs
least-loaded vs everything on the fast pool, same mixed load, one run.

Load: 1 interactive client (16 tokens) and 6 batch clients (64 tokens), closed loop,
`DURATION_S` each. SLO attainment per tier is measured by the client against the
local tier targets. The cost is the fleet's rent over the run: each deployed pool's
price x replicas, $/hour (what a user pays; `tandem.perf.fleet_rent_per_hour`). The
requests' `cost_usd` from the request log (the rent of the replica time each takes on a
full replica) is printed beside it per 1k requests, labelled as an attribution. "All
fast" deploys the same config with the `fast` pool alone (the cheap pool is removed).
Target: interactive attainment >= 99 % and cost <= 0.7x all-fast.
Run: `.venv/bin/python -m pytest -s -m "integration" tests/bench/test_routing_live.py`
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"
DURATION_S = 60


def _run(stack, streams) -> dict:
    from tandem.auth import client_key
    from tandem.routing.config import RoutingConfig
    from tandem.serve.loadgen import run_load, summarize
    from tandem.telemetry.request_log import read_requests

    results = run_load(stack.api_url, streams, DURATION_S, model=MODEL,
                       api_key=client_key(stack.home))
    time.sleep(4)  # the request log flushes every 2 s
    costs = {row["request_id"]: row["cost_usd"]
             for row in read_requests(stack.home / "telemetry").to_pylist()}
    summary = summarize(results, RoutingConfig.local_cpu_defaults())
    for tier, row in summary.items():
        mine = [r for r in results if r.tier == tier and r.request_id in costs]
        row["usd_per_1k"] = 1000 * sum(costs[r.request_id] for r in mine) / max(1, len(mine))
    everything = [r for r in results if r.request_id in costs]
    summary["all"] = {"requests": len(results),
                      "usd_per_1k": 1000 * sum(costs[r.request_id] for r in everything)
                      / max(1, len(everything))}
    return summary


def test_live_routing_policies(stack, registered):
    from tandem.perf import fleet_rent_per_hour
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown
    from tandem.serve.loadgen import Stream

    config_path = REPO / "apps" / "serve.local.yaml"
    model = {"model": f"models:/{MODEL}@champion"}
    mixed = [Stream("interactive", 16, 1), Stream("batch", 64, 6)]
    config = load_serve_config(config_path, model)
    fast_only = config.model_copy(update={"pools": {"fast": config.pools["fast"]}})
    table = {}
    try:
        for name, variant in (
                ("tandem", config),
                ("round-robin", config.model_copy(update={"routing_policy": "round-robin"})),
                ("least-loaded", config.model_copy(update={"routing_policy": "least-loaded"})),
                ("all-fast", fast_only)):
            deploy(variant, stack, log=lambda _: None)
            table[name] = _run(stack, mixed)
            table[name]["all"]["fleet_usd_per_hour"] = fleet_rent_per_hour(
                (pool.price_per_hour, pool.num_replicas) for pool in variant.pools.values())
    finally:
        shutdown(stack, log=lambda _: None)

    print("\n" + json.dumps(table, indent=1))
    print(f"\n{'policy':<12} {'interactive SLO':>15} {'batch SLO':>9} {'fleet $/h':>9} "
          f"{'vs all-fast':>11} {'attributed $/1k':>15} {'interactive on fast':>19}")
    base = table["all-fast"]["all"]["fleet_usd_per_hour"]
    for name, row in table.items():
        rent = row["all"]["fleet_usd_per_hour"]
        print(f"{name:<12} {row['interactive']['attainment']:>15.1%} {row['batch']['attainment']:>9.1%}"
              f" {rent:>9.2f} {rent / base:>10.2f}x {row['all']['usd_per_1k']:>15.5f}"
              f" {row['interactive'].get('share_fast', 0):>19.1%}")
    for row in table.values():
        assert row["interactive"]["failed"] == 0 and row["batch"]["failed"] == 0

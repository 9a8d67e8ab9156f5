"""Live routing on the local two-pool stack: the Tandem policy vs round-robin vs
least-loaded vs everything on the fast pool, same mixed load, `RUNS` runs each, on the
tiny model and on the real one (SmolLM2-135M-Instruct, apps/serve.real.yaml: the pools
differ as their configs say: sequences, KV cache, price).

Load: 1 interactive client (16 tokens) and 6 batch clients (64 tokens), closed loop,
`DURATION_S` each run. SLO attainment per tier is measured by the client against the
model's tier targets (the Serve config's `routing`). The cost is the fleet's rent over
the run: each deployed pool's price x replicas, $/hour (what a user pays;
`tandem.perf.fleet_rent_per_hour`). The requests' `cost_usd` from the request log (the
rent of the replica time each takes on a full replica) is printed beside it per 1k
requests, labelled as an attribution. "All fast" deploys the same config with the `fast`
pool alone (the cheap pool is removed). Each policy's runs follow each other on one
deployment; the table gives the median and the range over the runs.
Target: interactive attainment >= 99 % and cost <= 0.7x all-fast.

The same runs check the simulator against the live stack (#31 item 2,
`tandem.planner.live_replay`): each pool's model is fitted on the round-robin,
least-loaded and all-fast runs, and every run's arrivals are replayed through the
simulator under its own policy; the tandem runs are held out of the fit. Targets: per tier
attainment within 5 points, per pool TTFT p50/p90 within 20 % of the live run. The runs'
request-log rows are kept in `.tandem/bench/live-runs-<model>.json` for refitting.
Run: `.venv/bin/python -m pytest -s -m "integration" tests/bench/test_routing_live.py`
(`-k smollm2` for the real model alone: ~25 min).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"
DURATION_S = 60
RUNS = 3
CONFIGS = {"tiny": "serve.local.yaml", "smollm2": "serve.real.yaml"}


def _run(stack, streams, model: str, routing, recorded: list[list[dict]]) -> dict:
    """One run's summary; its request-log rows (`live_replay.COLUMNS`) go to `recorded`."""
    from tandem.auth import client_key
    from tandem.planner.live_replay import COLUMNS
    from tandem.serve.loadgen import run_load, summarize
    from tandem.telemetry.request_log import read_requests

    started = datetime.now(UTC) - timedelta(seconds=5)
    results = run_load(stack.api_url, streams, DURATION_S, model=model,
                       api_key=client_key(stack.home))
    time.sleep(4)  # the request log flushes every 2 s
    ids = {r.request_id for r in results}
    rows = [row for row in read_requests(stack.home / "telemetry", started,
                                         columns=[*COLUMNS, "cost_usd", "predicted_ttft_ms"]).to_pylist()
            if row["request_id"] in ids]
    recorded.append(rows)
    costs = {row["request_id"]: row["cost_usd"] for row in rows}
    summary = summarize(results, routing)
    for tier, row in summary.items():
        mine = [r for r in results if r.tier == tier and r.request_id in costs]
        row["usd_per_1k"] = 1000 * sum(costs[r.request_id] for r in mine) / max(1, len(mine))
    everything = [r for r in results if r.request_id in costs]
    summary["all"] = {"requests": len(results),
                      "usd_per_1k": 1000 * sum(costs[r.request_id] for r in everything)
                      / max(1, len(everything))}
    return summary


def _served(name: str, stack, request):
    """The config and registered model the bench serves: the tiny base (`registered`) on
    apps/serve.local.yaml, or SmolLM2's base on both pools of apps/serve.real.yaml."""
    from tandem.serve.config import load_serve_config

    from tests.integration.served_models import base_alone, smollm2_base_config

    if name == "smollm2":
        return smollm2_base_config(stack)
    request.getfixturevalue("registered")
    return base_alone(load_serve_config(REPO / "apps" / CONFIGS[name],
                                        {"model": f"models:/{MODEL}@champion"})), MODEL


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1%} ({min(values):.1%}-{max(values):.1%})"


@pytest.mark.parametrize("model_name", list(CONFIGS))
def test_live_routing_policies(stack, request, model_name):
    from tandem.perf import fleet_rent_per_hour
    from tandem.serve.deploy import deploy, shutdown
    from tandem.serve.loadgen import Stream

    config, model = _served(model_name, stack, request)
    routing = config.routing_config()
    mixed = [Stream("interactive", 16, 1), Stream("batch", 64, 6)]
    fast_only = config.model_copy(update={"pools": {"fast": config.pools["fast"]}})
    runs: dict[str, list[dict]] = {}
    recorded: dict[str, list[list[dict]]] = {}
    variants = {"tandem": config,
                "round-robin": config.model_copy(update={"routing_policy": "round-robin"}),
                "least-loaded": config.model_copy(update={"routing_policy": "least-loaded"}),
                "all-fast": fast_only}
    rent = {}
    try:
        for name, variant in variants.items():
            deploy(variant, stack, log=lambda _: None)
            recorded[name] = []
            runs[name] = [_run(stack, mixed, model, routing, recorded[name]) for _ in range(RUNS)]
            rent[name] = fleet_rent_per_hour(
                (pool.price_per_hour, pool.num_replicas) for pool in variant.pools.values())
    finally:
        shutdown(stack, log=lambda _: None)

    print("\n" + json.dumps(runs, indent=1))
    print(f"\n{model_name}, {RUNS} runs of {DURATION_S} s each: median (range)")
    print(f"{'policy':<12} {'interactive SLO':>22} {'batch SLO':>22} {'fleet $/h':>9} "
          f"{'vs all-fast':>11} {'attributed $/1k':>15} {'interactive on fast':>19}")
    for name, rows in runs.items():
        attributed = statistics.median(row["all"]["usd_per_1k"] for row in rows)
        on_fast = statistics.median(row["interactive"].get("share_fast", 0) for row in rows)
        print(f"{name:<12} {_spread([row['interactive']['attainment'] for row in rows]):>22} "
              f"{_spread([row['batch']['attainment'] for row in rows]):>22} {rent[name]:>9.2f} "
              f"{rent[name] / rent['all-fast']:>10.2f}x {attributed:>15.5f} {on_fast:>19.1%}")
    for rows in runs.values():
        for row in rows:
            assert row["interactive"]["failed"] == 0 and row["batch"]["failed"] == 0
    kept = REPO / ".tandem" / "bench" / f"live-runs-{model_name}.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(recorded, default=str))
    _simulator_against_live(variants, recorded, routing, model_name)


def _simulator_against_live(variants, recorded, routing, model_name: str) -> None:
    """Fit the pools on every run but tandem's, replay every run under its own policy."""
    from tandem.planner.live_replay import (
        LiveRun,
        check_against_live,
        format_comparisons,
        format_fits,
        tally,
    )
    from tandem.serve.router import build_policy, pool_priors

    live = {name: [LiveRun.from_rows(f"{name} {k + 1}", rows) for k, rows in enumerate(runs)]
            for name, runs in recorded.items()}
    for contention in (True, False):
        fits, comparisons = check_against_live(
            pool_priors(variants["tandem"]), live,
            {name: list(variant.pools) for name, variant in variants.items()},
            {name: lambda variant=variant: build_policy(variant)
             for name, variant in variants.items()},
            routing, contention=contention)
        print(f"\n{model_name}: pools fitted on the round-robin, least-loaded and all-fast runs"
              f" ({'contention fitted' if contention else 'no contention'})")
        print(format_fits(fits))
        print(format_comparisons(comparisons, "simulated vs live (tandem held out of the fit); "
                                 "targets: 5 points, 20 %"))
        for comparison in comparisons:
            print(f"{comparison.run}: {'; '.join(comparison.misses()) or 'within targets'}")
        print(tally(comparisons))

"""The simulator checked against the live stack, short version (the full one is the live
routing bench, tests/bench/test_routing_live.py): SmolLM2-135M-Instruct on the two local
pools of apps/serve.real.yaml under the bench's mixed load, one run each of all-`fast`,
least-loaded and tandem. The pools are fitted on the first two runs
(`tandem.planner.live_replay`); the tandem run, held out, is replayed through the
simulator under the tandem policy, and the comparison is printed.

Asserted: the fitted models replay the runs they were fitted on (median |err| of TTFT
and TPOT within `FIT_ERROR`), the two-pool run shows the pools slowing each other down
(contention < 1), and the replay serves every request the live run served. The held-out
run's targets (5 points, 20 %) are printed, not asserted: over `DURATION_S` a pool's p90
rests on a few dozen requests; the bench's nine runs judge them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
DURATION_S = 30
FIT_ERROR = 0.20


def _live_run(stack, model: str, name: str, policy: str):
    from tandem.auth import client_key
    from tandem.planner.live_replay import LiveRun
    from tandem.serve.loadgen import Stream, run_load

    started = datetime.now(UTC) - timedelta(seconds=5)
    results = run_load(stack.api_url, [Stream("interactive", 16, 1), Stream("batch", 64, 6)],
                       DURATION_S, model=model, api_key=client_key(stack.home))
    time.sleep(4)  # the request log flushes every 2 s
    assert all(result.status == 200 for result in results)
    return LiveRun.from_log(stack.home / "telemetry", {r.request_id for r in results}, name,
                            policy, since=started)


def test_simulator_replays_a_held_out_live_run(stack):
    from tandem.models.packaged import import_packaged_model
    from tandem.planner.live_replay import check_against_live, format_comparisons, format_fits
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown
    from tandem.serve.router import build_policy, pool_priors

    model = import_packaged_model("smollm2", stack, log=lambda _: None)[0]
    config = load_serve_config(REPO / "apps" / "serve.real.yaml",
                               {"model": f"models:/{model}@champion", "adapters": []})
    config = config.model_copy(update={"pools": {
        name: pool.model_copy(update={"adapters": None}) for name, pool in config.pools.items()}})
    variants = {"all-fast": config.model_copy(update={"pools": {"fast": config.pools["fast"]}}),
                "least-loaded": config.model_copy(update={"routing_policy": "least-loaded"}),
                "tandem": config}
    runs = {}
    try:
        for name, variant in variants.items():
            deploy(variant, stack, log=lambda _: None)
            runs[name] = [_live_run(stack, model, name, variant.routing_policy)]
    finally:
        shutdown(stack, log=lambda _: None)

    routing = config.routing_config()
    fits, comparisons = check_against_live(
        pool_priors(config), runs, {name: list(v.pools) for name, v in variants.items()},
        {name: lambda v=v: build_policy(v) for name, v in variants.items()}, routing)
    print("\n" + format_fits(fits))
    print(format_comparisons(comparisons, "simulated vs live (tandem held out of the fit)"))
    for comparison in comparisons:
        print(f"{comparison.run}: {'; '.join(comparison.misses()) or 'within targets'}")

    for pool, fit in fits.items():
        assert fit.ttft_error <= FIT_ERROR and fit.tpot_error <= FIT_ERROR, (pool, fit)
    assert fits["fast"].contention < 1.0
    for comparison, run in zip(comparisons, [r for group in runs.values() for r in group]):
        assert sum(sim for _, sim in comparison.requests.values()) == len(run.trace)

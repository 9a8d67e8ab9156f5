"""The simulator-against-live pipeline on runs whose truth is known: "live" runs are
simulated from known replica models (two pools slowing each other down), then fitted,
replayed and compared as a bench does with the request log of a real stack."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from tandem.perf import flat_prior
from tandem.planner import live_replay
from tandem.planner.live_replay import LiveRun, compare, fit_pools, replay
from tandem.planner.simulator import Pace, Slo, simulate
from tandem.planner.trace import Trace
from tandem.routing.config import RoutingConfig
from tandem.routing.policy import LeastLoadedPolicy

START = datetime(2026, 12, 7, tzinfo=UTC)
TRUE_CONTENTION = 0.7


def _model(fixed_ms: float, per_token_ms: float, seqs: int):
    return replace(flat_prior(150, 40, 0.1, max_num_seqs=seqs), request_overhead=0.05,
                   overhead=0.004, mem_fixed=fixed_ms / 1e3, mem_per_token=1e-6,
                   flop_per_token=per_token_ms / 1e3)


TRUTH = {"fast": _model(35, 4, 32), "cheap": _model(40, 5, 4)}


def _rows(pools: list[str], seed: int, count: int = 160) -> list[dict]:
    """Request-log rows of a run simulated on `TRUTH`'s `pools`, least-loaded routing."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.6, count)) - 0.6
    prompt = rng.integers(15, 40, count)
    output = np.where(rng.random(count) < 0.3, 16, 64)
    result = simulate(Trace(arrival, prompt, output), {p: (TRUTH[p], 1) for p in pools},
                      Slo(math.inf, math.inf), policy=LeastLoadedPolicy(),
                      pace=Pace(contention=TRUE_CONTENTION))
    names = [pool.name for pool in result.pools]
    ttft = (result.first_token_s - arrival) * 1e3
    tpot = (result.finish_s - result.first_token_s) / (output - 1) * 1e3
    return [{"request_id": f"{seed}-{i}", "time": START + timedelta(seconds=float(arrival[i])),
             "pool": names[result.pool_of_request[i]],
             "tier": "interactive" if output[i] == 16 else "batch",
             "prompt_tokens": int(prompt[i]), "completion_tokens": int(output[i]),
             "ttft_ms": float(ttft[i]), "tpot_ms": float(tpot[i]), "status": 200}
            for i in range(count)]


def _priors():
    """What the live config states: a flat prior per pool, far from the truth."""
    return {pool: flat_prior(150, 42, 0.1, max_num_seqs=TRUTH[pool].max_num_seqs,
                             overhead_ms=30) for pool in TRUTH}


@pytest.fixture(scope="module")
def fitted():
    runs = [LiveRun.from_rows("shared", _rows(["fast", "cheap"], 1)),
            LiveRun.from_rows("alone", _rows(["fast"], 2))]
    return fit_pools(_priors(), runs)


def test_the_fit_replays_its_own_runs(fitted):
    for fit in fitted.values():
        assert fit.ttft_error < 0.15 and fit.tpot_error < 0.10, fit
        assert fit.prior_ttft_error > 2 * fit.ttft_error  # the prior is far from the truth


def test_contention_is_found_where_a_pool_ran_alone_and_shared(fitted):
    assert 0.55 <= fitted["fast"].contention <= 0.9
    assert fitted["cheap"].contention == fitted["fast"].contention  # held, not fitted


@pytest.mark.parametrize("policy", [LeastLoadedPolicy, None], ids=["policy", "recorded"])
def test_a_held_out_run_replays_within_the_targets(fitted, policy):
    """Attainment and the pools' median TTFT; a tail from 80 requests a pool is left to
    the benches (their runs hold a few hundred)."""
    routing = RoutingConfig.local_cpu_defaults()
    held = LiveRun.from_rows("held", _rows(["fast", "cheap"], 3))
    comparison = compare(held, replay(held, fitted, policy and policy(), routing), routing)
    assert set(comparison.attainment) == {"interactive", "batch"}
    assert all(abs(sim - live) <= 0.05 for live, sim in comparison.attainment.values())
    assert sum(sim for _, sim in comparison.requests.values()) == len(held.trace)
    for (live_p50, _), (sim_p50, _) in comparison.ttft.values():
        assert abs(sim_p50 - live_p50) <= 0.2 * live_p50


def test_without_contention_the_held_out_run_is_replayed_too_fast():
    """The fault the contention term is for: pools fitted as if they never shared."""
    runs = [LiveRun.from_rows("alone", _rows(["fast"], 2))]
    fits = fit_pools({"fast": _priors()["fast"]}, runs)
    assert fits["fast"].contention == 1.0
    held = LiveRun.from_rows("held", _rows(["fast", "cheap"], 3)).of_pool("fast")
    live_p50 = float(np.median(held.tpot_ms))
    result = replay(held, fits, None, RoutingConfig.local_cpu_defaults())
    simulated = (result.finish_s - result.first_token_s) / (held.trace.output_tokens - 1) * 1e3
    assert float(np.median(simulated)) < 0.9 * live_p50


def test_a_run_without_a_served_request_is_refused():
    rows = _rows(["fast"], 4, count=5)
    with pytest.raises(ValueError, match="no request served"):
        LiveRun.from_rows("empty", [{**row, "status": 503} for row in rows])


def test_recorded_choices_send_each_request_where_it_went_live():
    run = LiveRun.from_rows("shared", _rows(["fast", "cheap"], 5, count=60))
    fits = {pool: live_replay.PoolFit(TRUTH[pool], 1.0, 0, 0.0, 0.0, 0.0, 0.0) for pool in TRUTH}
    result = replay(run, fits, None, RoutingConfig.local_cpu_defaults())
    names = [pool.name for pool in result.pools]
    assert [names[p] for p in result.pool_of_request] == run.pools.tolist()

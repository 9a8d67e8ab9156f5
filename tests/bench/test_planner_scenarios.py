"""`tandem plan` on the bundled conversation trace: savings per scenario, plan time, and the
capacity estimate's error per GPU type.

Scenarios (trace at 20x, 99 % attainment, every fleet validated with the tandem router):
the four of the planner issue (8B fp16 at 2 s / 100 ms and 500 ms / 50 ms, 70B fp8 at
2 s / 100 ms and 5 s / 150 ms), 70B at 2 s / 100 ms routed by least-loaded, 8B with the
H100 scarce (`--available H100=4`), and 8B with two tiers (chat 30 % at 500 ms / 50 ms,
bulk 70 % TPOT-only 150 ms). Savings are against the cheapest homogeneous fleet the same
run validated. Plan time is CPU time (`process_time`) of the whole `make_plan` call.

Capacity error, held out: each type's factor is fitted at 10x (`plan.search.fit`), then
steady-state replicas at 20x times that factor are compared with the replicas the
simulator validated at 20x. (At the rate it was fitted at, the estimate equals the
validated count by construction, so that figure would say nothing.)

Run: `.venv/bin/python -m pytest -s tests/bench/test_planner_scenarios.py` (~5 min).
"""

from __future__ import annotations

import math
import time

from tandem.catalog import load_catalog
from tandem.planner.demand import make_tier
from tandem.planner.fleet import describe
from tandem.planner.plan import make_plan
from tandem.planner.trace import bundled_trace_path, load_trace

RATE = 20.0
TARGET_ERROR = 0.15
CPU_LIMIT_S = {"llama-3.1-8b": 60.0, "llama-3.1-70b": 120.0}
ONE = lambda ttft, tpot: [make_tier("all", 1.0, ttft, tpot)]  # noqa: E731
SCENARIOS = {
    "8B fp16, 2 s / 100 ms": dict(model="llama-3.1-8b", precision="fp16", tiers=ONE(2000, 100)),
    "8B fp16, 500 ms / 50 ms": dict(model="llama-3.1-8b", precision="fp16", tiers=ONE(500, 50)),
    "70B fp8, 2 s / 100 ms": dict(model="llama-3.1-70b", precision="fp8", tiers=ONE(2000, 100)),
    "70B fp8, 5 s / 150 ms": dict(model="llama-3.1-70b", precision="fp8", tiers=ONE(5000, 150)),
    "70B fp8, 2 s / 100 ms, least-loaded": dict(model="llama-3.1-70b", precision="fp8",
                                                 tiers=ONE(2000, 100), policy="least-loaded"),
    "8B fp16, 2 s / 100 ms, H100=4 available": dict(
        model="llama-3.1-8b", precision="fp16", tiers=ONE(2000, 100), available={"H100": 4}),
    "8B fp16, chat 30 % 500/50 + bulk 70 % TPOT 150": dict(
        model="llama-3.1-8b", precision="fp16",
        tiers=[make_tier("chat", 0.3, 500, 50), make_tier("bulk", 0.7, None, 150)]),
}


def _plan(trace, catalog, rate, model, precision, tiers, **options):
    started = time.process_time()
    plan = make_plan(trace, catalog, catalog.model(model), precision, tiers, 0.99, rate,
                     **options)
    return plan, time.process_time() - started


def test_planner_scenarios():
    catalog = load_catalog()
    trace = load_trace(bundled_trace_path())
    print(f"\n{len(trace)} requests (bundled conversation trace) at {RATE:g}x, 99 % per tier")
    print("| scenario | plan | $/h | best homogeneous | $/h | savings | worst tier | "
          "simulations | CPU s (limit) |")
    print("|---|---|---|---|---|---|---|---|---|")
    plans = {}
    for name, scenario in SCENARIOS.items():
        plan, cpu = _plan(trace, catalog, RATE, **scenario)
        plans[name] = plan
        alone = plan.best_homogeneous
        limit = CPU_LIMIT_S[scenario["model"]]
        print(f"| {name} | {describe(plan.best.fleet, plan.offers)} | "
              f"{plan.best.cost_per_hour:.2f} | "
              f"{describe(alone.fleet, plan.offers) if alone else 'none'} | "
              f"{alone.cost_per_hour if alone else math.nan:.2f} | "
              f"{plan.savings if plan.savings is not None else math.nan:.1%} | "
              f"{plan.best.judgement.worst:.2%} | {len(plan.search.simulated)} | "
              f"{cpu:.0f} ({limit:.0f}) |")
        assert plan.best.passes
        assert alone is None or plan.best.cost_per_hour <= alone.cost_per_hour + 1e-9

    print("\ncapacity estimate per GPU type, fitted at 10x, checked at 20x "
          f"(target: within {TARGET_ERROR:.0%} of the validated count)")
    print("| scenario | GPU | steady state | factor (10x) | estimate | validated | error | "
          "uncalibrated error |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("8B fp16, 2 s / 100 ms", "70B fp8, 2 s / 100 ms"):
        fitted_at, _ = _plan(trace, catalog, RATE / 2, **SCENARIOS[name])
        checked = plans[name]
        for gpu, steady in checked.search.steady_state.items():
            alone = checked.homogeneous.get(gpu)
            if alone is None or gpu not in fitted_at.search.fit.fitted:
                print(f"| {name} | {gpu} | {steady:.1f} | - | - | not validated | - | - |")
                continue
            factor = fitted_at.search.fit.factor(gpu)
            validated = alone.fleet[gpu]
            estimate = steady * factor
            print(f"| {name} | {gpu} | {steady:.1f} | {factor:.2f} | {estimate:.1f} | "
                  f"{validated} | {estimate / validated - 1:+.1%} | "
                  f"{steady / validated - 1:+.1%} |")

"""What a pool's engine reports of its batch, and how it reaches the router: the tracker the
vLLM plugin fills each step, the reporter task that sends it, the shared view that holds it,
and the router's pool states. Plain objects: no Ray, no
vLLM."""

from __future__ import annotations

import asyncio

import pytest
from tandem.routing import RequestFeatures
from tandem.serve import engine_load
from tandem.serve.config import load_serve_config
from tandem.serve.engine_load import (
    MAX_AGE_S,
    STEP_WINDOW_REPORTS,
    EngineLoad,
    EngineReporter,
    LoadTracker,
    deployment_loads,
    merge_loads,
)
from tandem.serve.router import PoolRouter
from tandem.serve.shared_view import LIVE_S, SharedView

from tests.unit.serve.test_router import LOCAL, ROUTES, by_name  # the local pools' routes


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_report_holds_the_last_steps_counts_and_the_mean_token_gap_lately():
    tracker = LoadTracker()
    tracker.step(3, 1, 0.25, [0.010, 0.012, 0.014])
    tracker.step(4, 2, 0.30, [0.016])
    assert tracker.report(5.0) == EngineLoad(4, 2, 0.30, pytest.approx(0.013), 5.0)
    tracker.step(4, 0, 0.30, [0.033] * 4)  # a neighbour's burst: the mean moves, not jumps
    assert tracker.report(5.25).step_s == pytest.approx(0.023)
    tracker.step(0, 0, 0.0, [])
    for index in range(STEP_WINDOW_REPORTS - 2):  # idle: the gaps seen lately still count
        assert tracker.report(5.5 + index).step_s == pytest.approx(0.023)
    assert tracker.report(9.0).step_s == pytest.approx(0.033)  # the first window is out
    assert tracker.report(9.25) == EngineLoad(0, 0, 0.0, 0.0, 9.25)  # then none is left


def test_fresh_reports_merge_per_replica_and_stale_ones_are_dropped():
    now = 100.0
    loads = [EngineLoad(4, 2, 0.5, 0.010, now - 0.3), EngineLoad(2, 0, 0.1, 0.0, now - 0.1),
             EngineLoad(9, 9, 0.9, 0.050, now - MAX_AGE_S - 0.1)]
    assert merge_loads(loads, now) == EngineLoad(3, 1, pytest.approx(0.3), 0.010, now - 0.3)
    assert merge_loads(loads[2:], now) is None
    reports = [(("app-a", "dep-a", "r1", 0), tuple(loads[0])),
               (("app-a", "dep-a", "r2", 0), tuple(loads[1])),
               (("app-b", "dep-b", "r3", 0), tuple(loads[2]))]
    merged = deployment_loads(reports, now)
    assert set(merged) == {("app-a", "dep-a")}  # app-b's only report is too old
    assert merged["app-a", "dep-a"].running == 3


class _View:
    """The shared view actor's handle, as far as the reporter uses it."""

    def __init__(self, view: SharedView, fail_first: int = 0) -> None:
        self.view, self.fail_first, self.report_engine = view, fail_first, self

    def remote(self, key, load):
        async def call():
            if self.fail_first:
                self.fail_first -= 1
                raise ConnectionError("actor restarting")
            self.view.report_engine(key, load)
        return call()


def test_the_reporter_sends_every_quarter_second_and_survives_a_missing_or_failing_view(
        monkeypatch):
    monkeypatch.setattr(engine_load, "LOOKUP_S", 0.01)
    monkeypatch.setattr(engine_load, "PUSH_S", 0.01)
    monkeypatch.setattr(engine_load, "STEP_WINDOW_REPORTS", 1000)  # the step outlives the test
    clock, view = Clock(10.0), SharedView(Clock(10.0))
    handles = [None, _View(view, fail_first=1), _View(view)]  # none yet, then one that fails
    tracker = LoadTracker()
    tracker.step(2, 1, 0.2, [0.02])
    reporter = EngineReporter(tracker, ("app", "dep", "r1", 0),
                              lambda: handles.pop(0) if len(handles) > 1 else handles[0], clock)

    async def run_briefly():
        task = asyncio.create_task(reporter.run())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run_briefly())
    engines = view.sync("ingress-1", {}, {})["engines"]
    assert engines == [(("app", "dep", "r1", 0), (2, 1, 0.2, 0.02, 10.0))]


def test_the_view_forgets_an_engine_not_heard_from():
    clock = Clock()
    view = SharedView(clock)
    view.report_engine(("app", "dep", "r1", 0), (1, 0, 0.1, 0.01, 0.0))
    assert len(view.sync("ingress-1", {}, {})["engines"]) == 1
    clock.now = LIVE_S + 1
    assert view.sync("ingress-1", {}, {})["engines"] == []


@pytest.fixture
def router(tmp_path):
    return PoolRouter(load_serve_config(LOCAL), tmp_path / "decisions.jsonl")


def _report(router, pool, load, now):
    route = ROUTES[pool]
    router.engines_reported([((route["app"], route["deployment"], "r1", 0), tuple(load))], now)


def test_pool_states_carry_the_engines_report_beside_the_routers_counts(router):
    features = RequestFeatures(prompt_tokens=8, max_tokens=64, tier="batch")
    for _ in range(7):  # the ingress counts 7 in flight, 3 of them queued beyond 4 slots
        router.dispatched("cheap", features, ROUTES["cheap"]["app"])
    _report(router, "cheap", EngineLoad(4, 1, 0.4, 0.012, 50.2), 50.3)
    cheap = by_name(router.states(ROUTES, now=50.3))["cheap"]
    assert (cheap.in_flight, cheap.queued) == (4, 3)
    assert (cheap.engine_running, cheap.engine_waiting) == (4, 1)
    assert cheap.kv_cache_usage == 0.4 and cheap.engine_step_ms == pytest.approx(12.0)
    two = by_name(router.states({"cheap": {**ROUTES["cheap"], "replicas": 2}}, now=50.3))
    assert (two["cheap"].engine_running, two["cheap"].engine_waiting) == (8, 2)  # per replica
    fast = by_name(router.states(ROUTES, now=50.3))["fast"]
    assert fast.engine_running is None  # fast's engine sent nothing: its counts stand alone
    assert router.engine_reports(50.5) == [
        {"app": ROUTES["cheap"]["app"], "deployment": ROUTES["cheap"]["deployment"],
         "running": 4, "waiting": 1, "kv_cache_usage": 0.4, "step_ms": pytest.approx(12.0),
         "age_s": pytest.approx(0.3)}]


def test_a_report_older_than_a_second_is_not_used(router):
    _report(router, "cheap", EngineLoad(4, 1, 0.4, 0.012, 10.0), 10.1)
    assert by_name(router.states(ROUTES, now=10.5))["cheap"].engine_waiting == 1
    cheap = by_name(router.states(ROUTES, now=10.0 + MAX_AGE_S + 0.01))["cheap"]
    assert cheap.engine_running is None and cheap.engine_step_ms is None

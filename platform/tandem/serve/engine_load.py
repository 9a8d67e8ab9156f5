"""What each pool's engine knows of its batch, at the ingress within a second.

The ingress counts the requests it sent to a pool; it does not see where they are in the
engine: how many run in the batch and how many wait for a slot, how full the KV cache is,
and how long an engine step takes now (a busy neighbour on shared cores slows every step,
which no count shows). vLLM's scheduler knows after every step. A stat-logger plugin
(`tandem.serve.engine_stats`, registered under vLLM's `vllm.stat_logger_plugins` entry
point) folds each step into a `LoadTracker`; an `EngineReporter` task in the pool replica
sends what it holds to the deployment's shared view (`tandem.serve.shared_view`) every
`PUSH_S`, busy or idle, stamped with when it was sent; the ingress gets the view every
`SYNC_S` (`tandem.serve.ingress.pool_sync`), and the router uses a pool's reports while
they are at most `MAX_AGE_S` old (`merge_loads`, `tandem.serve.router.PoolRouter.states`).
What it sees is therefore at most `PUSH_S` + `SYNC_S` + two actor calls old.

Without reports (an engine that is not vLLM, a replica restarting, the view actor
restarting) the router predicts from its own counts, as it did before engines reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

PUSH_S = 0.25
MAX_AGE_S = 1.0
# The step time is the mean gap between tokens over the last 2 s of reports: over one
# report's quarter second it swings with every neighbour's burst (measured on 2 shared
# cores: 5-30 ms from one report to the next), and a wait for a slot lasts longer than that.
STEP_WINDOW_REPORTS = 8
LOOKUP_S = 2.0  # between looks for the shared view while it does not exist yet

EngineKey = tuple[str, str, str, int]  # (Serve application, deployment, replica id, engine index)


class EngineLoad(NamedTuple):
    """One engine's batch as it last reported it (per replica where merged)."""

    running: float  # requests in the batch
    waiting: float  # requests waiting for a batch slot
    kv_cache_usage: float  # share of the KV cache in use, 0..1
    step_s: float  # mean time between two tokens of a running request lately; 0: none decoded
    at: float  # wall clock when it was sent


class LoadTracker:
    """The scheduler's counts after the latest engine step, and the mean inter-token latency
    of the tokens decoded over the last `STEP_WINDOW_REPORTS` reports."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0
        self._latency_sum = 0.0
        self._latencies = 0
        self._windows: deque[tuple[float, int]] = deque(maxlen=STEP_WINDOW_REPORTS)

    def step(self, running: int, waiting: int, kv_cache_usage: float,
             inter_token_latencies: Iterable[float] = ()) -> None:
        """One engine step: its scheduler counts and the gaps between its tokens (seconds)."""
        self.running, self.waiting, self.kv_cache_usage = running, waiting, kv_cache_usage
        for latency in inter_token_latencies:
            self._latency_sum += latency
            self._latencies += 1

    def report(self, now: float) -> EngineLoad:
        """What to send at `now`. The step time is the mean gap between the tokens decoded
        over this report's window and the ones before it (0: none decoded in them)."""
        self._windows.append((self._latency_sum, self._latencies))
        self._latency_sum, self._latencies = 0.0, 0
        decoded = sum(count for _, count in self._windows)
        step_s = sum(total for total, _ in self._windows) / decoded if decoded else 0.0
        return EngineLoad(self.running, self.waiting, self.kv_cache_usage, step_s, now)


class EngineReporter:
    """Sends a tracker's report to the shared view every `PUSH_S`, from the replica's loop.

    Args:
        tracker: what the engine's steps filled.
        key: the engine, as the router finds its pool: Serve application and deployment
            (a route's), replica id and engine index.
        find_view: returns the shared view's actor handle, None while there is none; called
            off the event loop (a blocking Ray lookup).
        clock: wall clock, injectable for tests.
    """

    def __init__(self, tracker: LoadTracker, key: EngineKey, find_view: Callable[[], Any],
                 clock: Callable[[], float] = time.time) -> None:
        self.tracker = tracker
        self.key = key
        self._find_view = find_view
        self._clock = clock

    async def run(self) -> None:
        view = None
        while True:
            if view is None:
                try:
                    view = await asyncio.to_thread(self._find_view)
                except Exception:  # Ray not reachable yet: as if there were no view
                    view = None
                if view is None:
                    await asyncio.sleep(LOOKUP_S)
                    continue
            try:
                await view.report_engine.remote(self.key,
                                                tuple(self.tracker.report(self._clock())))
            except Exception:  # the actor restarts: look it up again
                view = None
            await asyncio.sleep(PUSH_S)


def merge_loads(loads: Iterable[EngineLoad], now: float) -> EngineLoad | None:
    """One deployment's reports at most `MAX_AGE_S` old at `now`, per replica: mean counts,
    KV use and step time (of the engines that decoded), the oldest report's time; None
    when none is that fresh."""
    fresh = [load for load in loads if now - load.at <= MAX_AGE_S]
    if not fresh:
        return None
    count = len(fresh)
    steps = [load.step_s for load in fresh if load.step_s > 0]
    return EngineLoad(sum(load.running for load in fresh) / count,
                      sum(load.waiting for load in fresh) / count,
                      sum(load.kv_cache_usage for load in fresh) / count,
                      sum(steps) / len(steps) if steps else 0.0,
                      min(load.at for load in fresh))


def deployment_loads(reports: Iterable[tuple[EngineKey, EngineLoad]], now: float
                     ) -> dict[tuple[str, str], EngineLoad]:
    """(Serve application, deployment) -> its engines' reports merged (`merge_loads`), from
    what the shared view holds; deployments without a fresh report are left out."""
    grouped: dict[tuple[str, str], list[EngineLoad]] = {}
    for (app, deployment, _, _), load in reports:
        grouped.setdefault((app, deployment), []).append(EngineLoad(*load))
    merged = {key: merge_loads(loads, now) for key, loads in grouped.items()}
    return {key: load for key, load in merged.items() if load is not None}

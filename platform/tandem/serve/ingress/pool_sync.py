"""Beside the requests, the ingress replica's view of its pools kept in sync, every half second.

- The route table actor (`tandem.serve.routes`) is polled, so a version swap or a canary
  never redeploys the ingress; each applied epoch is acknowledged.
- Each pool's RUNNING replicas are handed to the router, which judges load per running
  replica: autoscaling changes the count. A pool that may scale to zero is cold, not
  down, without one. Any other pool is marked down as soon as Serve reports
  none of its replicas RUNNING (killed, or restarting): Serve would hold requests for it
  until the restart, which for an engine takes tens of seconds, and no request would fail
  to tell the router. The replica states
  come from the controller's raw instance details: `serve.status()` builds pydantic
  models that pickle each deployment's request router class, which took a quarter of this
  replica's CPU under load.
- Each pool's price and running replicas are exported (`ray_tandem_pool_price_per_hour`,
  `ray_tandem_pool_replicas`): their product is the pool's rent.
- A failed pool gets its traffic back once a health check answers; an idle pool the router
  has not observed lately gets a one-token probe (user requests are never probes).
- In a task of its own, so that a slow probe never delays it: every `SYNC_S` the replica's
  admissions and load go to the deployment's shared view (`tandem.serve.shared_view`),
  and the deployment's rate-limit buckets, the other replicas' load and the pool engines'
  reports of their batch (`tandem.serve.engine_load`) come back.
- Every `tandem.routing.residual.FIT_EVERY_S`, in a thread: the latency model's residual
  tables are fitted to the requests answered lately; the request path only reads them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray.llm._internal.serve.core.configs.openai_api_models import (
    CompletionRequest,
    ErrorResponse,
)
from ray.llm._internal.serve.core.ingress.utils import _peek_at_generator
from ray.llm._internal.serve.core.protocol import RawRequestInfo

from tandem.routing import RequestFeatures
from tandem.routing.residual import FIT_EVERY_S, fit_tables
from tandem.serve.adapters import engine_models
from tandem.serve.limits import RateLimiter
from tandem.serve.metrics import ServeMetrics
from tandem.serve.router import PoolRouter
from tandem.serve.validation import estimate_prompt_tokens

POLL_S = 0.5
DEAD_POOL_CHECK_EVERY = 2  # polls between asking Serve's controller for replica states
PROBE_TIMEOUT_S = 2.0
PROBE_PROMPT = "translate: probe =>"
SYNC_S = 0.5  # with the actor call, well within the 1 s the rate-limit bound assumes


def running_replicas(details: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(application, deployment) -> replicas in state RUNNING, from Serve's instance details
    (`ServeControllerClient.get_serve_details()`)."""
    counts = {}
    for app_name, app in (details.get("applications") or {}).items():
        for name, deployment in (app.get("deployments") or {}).items():
            counts[(app_name, name)] = sum(
                1 for replica in deployment.get("replicas") or ()
                if getattr(replica.get("state"), "value", replica.get("state")) == "RUNNING")
    return counts


def judge_pools(table: dict[str, Any], running: dict[tuple[str, str], int], router: PoolRouter,
                now: float) -> dict[str, tuple[float, int]]:
    """Hand each champion pool's RUNNING replicas to the router, marking down those without
    one unless they may scale to zero (then they are cold); return each pool's price and
    running replicas, its canary's included, whose product is what the pool rents."""
    rent: dict[str, tuple[float, int]] = {}
    for entry in engine_models(table["models"]).values():
        canary = (entry.get("canary") or {}).get("pools") or {}
        for routes, champion in ((entry["pools"], True), (canary, False)):
            for pool, route in routes.items():
                count = running.get((route["app"], route["deployment"]))
                if champion and count == 0 and route.get("cold_start_s") is None:
                    router.failed(pool)
                if champion and count is not None:
                    router.scaled(pool, count, now)
                price, replicas = rent.get(pool, (route["price_per_hour"], 0))
                rent[pool] = (price, replicas + (count or 0))
    return rent


class PoolSync:
    """The background task of one ingress replica; `table` and `epoch` are what it last applied."""

    def __init__(self, table_actor, view_actor, replica: str, router: PoolRouter,
                 limiter: RateLimiter, handle, metrics: ServeMetrics) -> None:
        import ray

        self._actor = table_actor
        self._view = view_actor
        self._replica = replica
        self._router = router
        self._limiter = limiter
        self._metrics = metrics
        self._handle = handle  # route -> streaming deployment handle
        self.epoch, self.table = ray.get(table_actor.snapshot.remote(0))
        self._tasks: list[asyncio.Task] = []
        metrics.budgets({tier: targets.budget_per_hour  # fixed by the config: exported once
                         for tier, targets in router.routing.tiers.items()
                         if targets.budget_per_hour is not None})

    def ensure_running(self) -> None:
        if not self._tasks or any(task.done() for task in self._tasks):
            for task in self._tasks:
                task.cancel()
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run()), loop.create_task(self._run_sync()),
                           loop.create_task(self._run_fits())]

    async def _run_fits(self) -> None:
        while True:
            await asyncio.sleep(FIT_EVERY_S)
            samples = self._router.residual_samples()
            if not samples:
                continue
            try:
                tables = await asyncio.to_thread(fit_tables, samples)
            except Exception:  # a failed fit keeps the tables in use; the next one may do
                continue
            self._router.residuals_fitted(tables)

    async def _run_sync(self) -> None:
        while True:
            await self.sync_view()
            await asyncio.sleep(SYNC_S)

    async def sync_view(self) -> None:
        """Report this replica's admissions and load to the shared view; apply what it
        returns (the deployment's buckets, the other replicas' load)."""
        admitted = self._limiter.report()
        try:
            view = await self._view.sync.remote(self._replica, admitted,
                                                self._router.load_report(time.time()))
        except Exception:  # the actor restarts: admit on this replica's view meanwhile
            self._limiter.unreport(admitted)
            return
        self._limiter.apply(view["limits"], view["admitted_by_others"], time.monotonic())
        self._router.others = view["others"]
        self._router.engines_reported(view.get("engines", ()), time.time())

    async def _run(self) -> None:
        polls = 0
        while True:
            await self._poll_table()
            try:
                await asyncio.to_thread(self._router.write_decisions,
                                        self._router.take_decisions())
            except OSError:
                pass  # a full disk must not stop routing; the in-memory log still explains
            polls += 1
            if polls % DEAD_POOL_CHECK_EVERY == 0:
                await self._mark_dead_pools()
            await self._probe_down_pools()
            await self._probe_slow_pools()
            await asyncio.sleep(POLL_S)

    async def _poll_table(self) -> None:
        try:
            changed = await self._actor.snapshot.remote(self.epoch)
            if changed is not None:
                self.epoch, self.table = changed
            await self._actor.ack.remote(self._replica, self.epoch,
                                         dict(self._router.in_flight_apps))
        except Exception:  # the actor restarts or the cluster hiccups: keep the last table
            pass

    async def _mark_dead_pools(self) -> None:
        """Mark down each pool without a RUNNING replica (`judge_pools`); export each pool's
        price, running replicas and whether it is up."""
        from ray.serve.context import _get_global_client

        try:
            details = await asyncio.to_thread(_get_global_client().get_serve_details)
        except Exception:  # the controller is busy or restarting: judge again next poll
            return
        rent = judge_pools(self.table, running_replicas(details), self._router, time.time())
        for pool, (price, replicas) in rent.items():
            self._metrics.pool(pool, price, replicas, pool not in self._router.down)

    async def _probe_down_pools(self) -> None:
        from ray import serve

        down = [(pool, route) for entry in engine_models(self.table["models"]).values()
                for pool, route in entry["pools"].items() if pool in self._router.down]
        for pool, route in down:
            handle = serve.get_deployment_handle(route["deployment"], app_name=route["app"])
            try:
                await asyncio.wait_for(handle.check_health.remote(), PROBE_TIMEOUT_S)
            except Exception:
                continue
            self._router.recovered(pool)

    async def _probe_slow_pools(self) -> None:
        router = self._router
        now = time.time()
        features = RequestFeatures(prompt_tokens=estimate_prompt_tokens({"prompt": PROBE_PROMPT}),
                                   max_tokens=1, tier=router.default_tier())
        for model, entry in engine_models(self.table["models"]).items():
            for state in router.pools_to_probe(entry["pools"], now):
                request = CompletionRequest(model=model, prompt=PROBE_PROMPT, max_tokens=1,
                                            temperature=0)
                app = entry["pools"][state.name]["app"]
                router.dispatched(state.name, features, app)
                started = time.perf_counter()
                try:
                    replies = self._handle(entry["pools"][state.name]).completions.remote(
                        request, RawRequestInfo())
                    first, _ = await asyncio.wait_for(_peek_at_generator(replies),
                                                      PROBE_TIMEOUT_S)
                except Exception:  # a failing pool is the failure path's business
                    continue
                finally:
                    router.released(state.name, features, app)
                if not isinstance(first[0] if isinstance(first, list) else first, ErrorResponse):
                    router.probed(state, features, time.time(),
                                  (time.perf_counter() - started) * 1e3)

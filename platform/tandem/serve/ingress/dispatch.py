"""The third stage: pick a pool, call its LLMServer deployment, retry once elsewhere.

While a canary runs, its share of a model's requests goes to the challenger's pools
(`canary_or_champion`); the routing policy then picks the pool among that version's. A LoRA
adapter's request goes to its base's engines with the adapter version's name as its model
and as Serve's multiplexed model id (`tandem.serve.adapters`). A model with students is
routed across its own pools and theirs: the cheapest (model, pool) that meets the request's
latency targets and quality floor (`tandem.serve.students`).
A pool whose every replica already holds `limits.max_queued_requests` waiting requests
is skipped, and when all are full the answer is 503. A call that fails before anything
was streamed marks the pool down and is sent once more to the next best pool. So is one
still waiting for its first item when the pool is marked down: Serve holds a request for
a deployment whose replicas died until one restarts, which for an engine is minutes.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from fastapi import Request
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.llm._internal.serve.core.configs.openai_api_models import ErrorResponse
from ray.llm._internal.serve.core.ingress.utils import _peek_at_generator
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)

from tandem.routing.models import LiveQuality
from tandem.routing.policy import NoHealthyPool
from tandem.serve.ingress.exchange import Exchange
from tandem.serve.metrics import ServeMetrics
from tandem.serve.router import PoolRouter
from tandem.serve.routes import canary_or_champion
from tandem.serve.students import served_models
from tandem.serve.validation import RequestError

POOL_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError,
                 ReplicaUnavailableError)
DOWN_CHECK_S = 0.25  # how often a request waiting for its first item looks for its pool down


class PoolDown(Exception):
    """The pool was marked down while a request waited for its first item."""


async def await_first_item(stream, pool: str, down: set[str]):
    """(first item, stream) of a pool's reply, or PoolDown once `pool` is in `down` before
    the first item comes (the call is cancelled)."""
    peek = asyncio.ensure_future(_peek_at_generator(stream))
    try:
        while True:
            done, _ = await asyncio.wait({peek}, timeout=DOWN_CHECK_S)
            if done:
                return peek.result()
            if pool in down:
                raise PoolDown(pool)
    except BaseException:
        peek.cancel()
        cancel = getattr(stream, "cancel", None)
        if cancel is not None:
            cancel()
        raise


class Dispatcher:
    """Pool choice and the call to the chosen pool, for one ingress replica."""

    def __init__(self, router: PoolRouter, metrics: ServeMetrics, max_queued_requests: int,
                 live: LiveQuality) -> None:
        self._router = router
        self._live = live
        self._metrics = metrics
        self._max_queued = max_queued_requests
        self._handles: dict[tuple[str, str], Any] = {}

    def handle(self, route: dict[str, Any], lora: str | None = None):
        """The streaming handle of a route's deployment, for adapter version `lora` if given
        (cached: creating one is not free)."""
        key = (route["app"], route["deployment"], lora)
        handle = self._handles.get(key)
        if handle is None:
            handle = serve.get_deployment_handle(route["deployment"], app_name=route["app"])
            options = {"stream": True}
            if lora is not None:
                options["multiplexed_model_id"] = lora
            handle = self._handles[key] = handle.options(**options)
        return handle

    async def send(self, request: Request, kind: str, parsed, models: dict[str, Any],
                   exchange: Exchange):
        """(first item, stream) of the pool that answered `exchange.model`; the stream is
        None for a whole response or an error, which the first item then holds."""
        entry, served = models[exchange.model], ()
        if entry.get("students"):
            served, pools = served_models(models, exchange.model, random.random(), self._live)
            lora = None
        else:
            target = canary_or_champion(entry, random.random())
            pools, lora = target["pools"], (target.get("adapter") or {}).get("lora")
        if lora is not None:
            parsed.model = lora
        failed_pool = None
        for attempt in (1, 2):
            first_item, stream = await self._send_once(request, kind, parsed, pools, exchange,
                                                       failed_pool, lora, served)
            if stream is not None or attempt == 2:
                break
            failed_pool = exchange.pool  # the pool failed before streaming anything: once more
        return first_item, stream

    async def _send_once(self, request: Request, kind: str, parsed, pools: dict[str, Any],
                         exchange: Exchange, failed_pool: str | None, lora: str | None,
                         served: tuple | list):
        """Route among `pools` (of the `served` models, when several) and send once.
        Returns (first item, stream), or (exception, None) when the chosen pool failed
        before answering anything (the caller may retry elsewhere)."""
        router = self._router
        now = time.time()
        if failed_pool is not None:
            router.failed(failed_pool)
        states = router.states(pools, exclude=failed_pool, now=now)
        if all(s.queued >= self._max_queued * s.replicas for s in states if s.healthy):
            raise RequestError(503, "every pool's queue is full; retry shortly", code="overloaded")
        try:
            decision = router.choose(exchange.features, states, now, exchange.request_id, served)
        except NoHealthyPool:
            raise RequestError(503, "no healthy pool can take this request") from None
        if decision.model is not None:
            exchange.model = parsed.model = decision.model
            exchange.several_models = True
        self._metrics.decision(decision.pool, exchange.model, exchange.features.tier,
                               decision.predicted_slo_miss)
        route = pools[decision.pool]
        exchange.routed(decision, route, next(s for s in states if s.name == decision.pool),
                        router.price(decision, exchange.features, route["price_per_hour"]))
        router.dispatched(decision.pool, exchange.features, route["app"])
        if exchange.stream:
            router.awaiting_first_token(exchange.request_id, exchange.state, exchange.features,
                                        now)
        try:
            stream = getattr(self.handle(route, lora), kind).remote(
                parsed, RawRequestInfo.from_starlette_request(request))
            first, stream = await await_first_item(stream, decision.pool, router.down)
        except BackPressureError:
            self._release(exchange)
            raise RequestError(503, f"pool {decision.pool} is at its queue limit; retry shortly",
                               code="overloaded") from None
        except (*POOL_FAILURES, PoolDown) as error:
            self._release(exchange)
            if failed_pool is not None:
                raise
            return error, None
        except BaseException:
            self._release(exchange)
            raise
        first_item = first[0] if isinstance(first, list) else first
        if isinstance(first_item, ErrorResponse) or hasattr(first_item, "model_dump"):
            self._release(exchange)  # answered whole: the pool is done with it
        return first_item, stream

    def _release(self, exchange: Exchange) -> None:
        self._router.released(exchange.pool, exchange.features, exchange.app)
        self._router.settled(exchange.request_id, exchange.pool)
        exchange.released = True

"""The Tandem ingress: OpenAI-compatible HTTP in front of every pool.

A subclass of `ray.serve.llm`'s `OpenAiIngress` that, per request, validates the
input (OpenAI error bodies, never a 5xx for bad input), asks the pluggable routing
policy (`tandem.routing`) for a pool, streams from that pool's LLMServer
deployment and stamps the response with `x-tandem-pool`,
`x-tandem-model-version` and `x-tandem-cost-usd`. The body `id` is set to the
request id Ray Serve's proxy puts in the `x-request-id` response header, so the
two always agree.

Pools are found through the route table actor (`tandem.serve.routes`), polled
every half second, so a version swap never redeploys the ingress. While a canary runs
(`tandem.rollout`), its share of each model's requests goes to the challenger's pools,
and the request log records which version answered.

Every endpoint but `/healthz` needs a key (`tandem.auth`): inference keys for `/v1/*`,
admin keys for `/admin/*` (promote, rollback, routing decisions). Each key has a rate
limit (429); a pool holds at most `limits.max_queued_requests` waiting requests per replica
and is skipped when full, and when every pool is full the answer is 503. Both carry
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
)
from ray.llm._internal.serve.core.ingress.utils import (
    _openai_json_wrapper,
    _peek_at_generator,
    _sanitize_chat_completion_request,
)
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.llm.ingress import OpenAiIngress
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from vllm.exceptions import VLLMClientError

from tandem.auth import ADMIN, INFERENCE, AuthError, authenticate, load_keys
from tandem.routing import PoolState, RequestFeatures
from tandem.routing.hints import InvalidRoutingHint, parse_routing_hints
from tandem.routing.policy import NoHealthyPool
from tandem.serve import admin
from tandem.serve import routes as route_table
from tandem.serve.limits import RateLimiter
from tandem.serve.metrics import ServeMetrics
from tandem.serve.router import PoolRouter
from tandem.serve.validation import (
    RequestError,
    accepted_fields,
    check_body,
    error_body,
    estimate_cost_usd,
    estimate_prompt_tokens,
    parse_json_body,
    prompt_text,
    requested_max_tokens,
    response_text,
)
from tandem.telemetry.feedback import FeedbackError, FeedbackStore, parse_feedback
from tandem.telemetry.request_log import RequestLog

POLL_S = 0.5
DEAD_POOL_CHECK_EVERY = 2  # polls between asking Serve's controller for replica states
PROBE_TIMEOUT_S = 2.0
PROBE_PROMPT = "translate: probe =>"
POOL_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError,
                 ReplicaUnavailableError)
ENDPOINTS = {
    "chat": (ChatCompletionRequest, "messages", accepted_fields(ChatCompletionRequest)),
    "completions": (CompletionRequest, "prompt", accepted_fields(CompletionRequest)),
}

app = FastAPI(title="Tandem", docs_url=None, redoc_url=None, openapi_url=None)  # no unkeyed schema endpoint


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status,
                        headers=headers)


@app.exception_handler(RequestError)
async def _request_error(request: Request, error: RequestError) -> JSONResponse:
    headers = {"retry-after": str(error.retry_after or 1)} if error.status in (429, 503) else None
    return _error(error.status, error.message, error.param, error.code, headers)


@app.exception_handler(AuthError)
async def _auth_error(request: Request, error: AuthError) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if error.status == 401 else None
    code = "invalid_api_key" if error.status == 401 else "admin_key_required"
    return _error(error.status, error.message, "authorization", code, headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    first = (error.errors() or [{}])[0]
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return _error(400, f"invalid request: {first.get('msg', 'bad input')}", param)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return _error(error.status_code, str(error.detail))


class TandemIngress(OpenAiIngress):
    """OpenAI API + pool choice. Constructed by `apps/llm_app.py:build_app`."""

    def __init__(self, config: dict[str, Any], table: dict[str, Any],
                 pools: list | None = None) -> None:
        """`pools`: handles of pool deployments composed into this application (`serve
        deploy`); requests reach them, like any pool, by name through the route table."""
        super().__init__(llm_deployments={}, model_cards={})
        from tandem.serve.config import ServeAppConfig
        from tandem.settings import load_settings

        self._config = ServeAppConfig.model_validate(config)
        self._max_model_len = min(p.engine.max_model_len for p in self._config.pools.values())
        home = load_settings().home
        self._router = PoolRouter(self._config, home / "routing" / "decisions.jsonl")
        telemetry = self._config.telemetry
        telemetry_root = telemetry.root or str(home / "telemetry")
        self._requests = RequestLog(telemetry_root, flush_rows=telemetry.flush_rows,
                                    flush_interval_s=telemetry.flush_interval_s)
        self._feedback = FeedbackStore(telemetry_root)
        self._keys = load_keys(home)
        limits = self._config.limits
        self._limiter = RateLimiter(limits.requests_per_s, limits.burst)
        self._replica = f"{os.getpid()}-{id(self)}"
        self._table_actor = route_table.get_or_create(table)
        import ray

        self._epoch, self._table = ray.get(self._table_actor.snapshot.remote(0))
        self._handles: dict[tuple[str, str], Any] = {}
        self._metrics = ServeMetrics()
        self._poller: asyncio.Task | None = None

    # -- route table ---------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_routes())

    async def _poll_routes(self) -> None:
        polls = 0
        while True:
            try:
                changed = await self._table_actor.snapshot.remote(self._epoch)
                if changed is not None:
                    self._epoch, self._table = changed
                await self._table_actor.ack.remote(self._replica, self._epoch)
            except Exception:  # the actor restarts or the cluster hiccups: keep the last table
                pass
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

    async def _mark_dead_pools(self) -> None:
        """Mark a pool down as soon as Serve reports none of its replicas RUNNING (killed, or
        restarting): Serve would hold requests for it until the restart, which for an engine
        takes tens of seconds, and no request would fail to tell the router."""
        try:
            applications = (await asyncio.to_thread(serve.status)).applications
        except Exception:  # the controller is busy or restarting: judge again next poll
            return
        for entry in self._table["models"].values():
            for pool, route in entry["pools"].items():
                app = applications.get(route["app"])
                deployment = app and app.deployments.get(route["deployment"])
                if deployment and not any(getattr(state, "value", state) == "RUNNING" and count
                                          for state, count in deployment.replica_states.items()):
                    self._router.failed(pool)

    async def _probe_down_pools(self) -> None:
        """Give a failed pool its traffic back once its replica answers a health check
        (Serve restarts dead replicas; until then a call would wait for one)."""
        for model in self._table["models"].values():
            for pool, route in model["pools"].items():
                if pool not in self._router.down:
                    continue
                handle = serve.get_deployment_handle(route["deployment"], app_name=route["app"])
                try:
                    await asyncio.wait_for(handle.check_health.remote(), PROBE_TIMEOUT_S)
                except Exception:
                    continue
                self._router.recovered(pool)

    async def _probe_slow_pools(self) -> None:
        """Ask each idle pool the router has not observed lately for one token, and let the
        router learn from the answer: a pool judged slow while it was loaded gets no traffic
        that could prove it recovered (user requests are never used as probes)."""
        now = time.time()
        features = RequestFeatures(prompt_tokens=estimate_prompt_tokens({"prompt": PROBE_PROMPT}),
                                   max_tokens=1, tier=self._router.default_tier())
        for model, entry in self._table["models"].items():
            for state in self._router.pools_to_probe(entry["pools"], now):
                request = CompletionRequest(model=model, prompt=PROBE_PROMPT, max_tokens=1,
                                            temperature=0)
                self._router.in_flight[state.name] += 1
                started = time.perf_counter()
                try:
                    replies = self._handle(entry["pools"][state.name]).completions.remote(
                        request, RawRequestInfo())
                    first, _ = await asyncio.wait_for(_peek_at_generator(replies),
                                                      PROBE_TIMEOUT_S)
                except Exception:  # a failing pool is the failure path's business
                    continue
                finally:
                    self._router.in_flight[state.name] -= 1
                if not isinstance(first[0] if isinstance(first, list) else first, ErrorResponse):
                    self._router.probed(state, features, time.time(),
                                        (time.perf_counter() - started) * 1e3)

    def __del__(self) -> None:
        self._requests.close()

    async def check_health(self) -> None:
        self._ensure_poller()

    def _handle(self, route: dict[str, Any]):
        key = (route["app"], route["deployment"])
        handle = self._handles.get(key)
        if handle is None:
            handle = serve.get_deployment_handle(route["deployment"], app_name=route["app"])
            handle = self._handles[key] = handle.options(stream=True)
        return handle

    def _model_entry(self, model: str | None) -> tuple[str, dict[str, Any]]:
        models = self._table["models"]
        if model is None:
            if len(models) != 1:
                raise RequestError(400, "'model' is required when several models are served", "model")
            model = next(iter(models))
        entry = models.get(model)
        if entry is None or not entry["pools"]:
            raise RequestError(404, f"model {model!r} is not served here; GET /v1/models lists "
                               "the served models", "model", "model_not_found")
        return model, entry

    def _admit(self, request: Request, needed: str = INFERENCE) -> None:
        """The caller's key may do `needed` and is within its rate limit."""
        key = authenticate(request.headers.get("authorization"), self._keys, needed)
        wait = self._limiter.retry_after(key.name, time.monotonic(), key.requests_per_s, key.burst)
        if wait:
            raise RequestError(429, f"rate limit of key {key.name!r} reached; retry in {wait} s",
                               code="rate_limit_exceeded", retry_after=wait)

    # -- endpoints -----------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        self._ensure_poller()
        return {"status": "ok", "models": {name: entry["version"]
                                           for name, entry in self._table["models"].items()}}

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> dict[str, Any]:
        self._admit(request)
        self._ensure_poller()
        data = []
        for name, entry in self._table["models"].items():
            data.append({
                "id": name, "object": "model", "created": 0, "owned_by": "tandem",
                "version": str(entry["version"]),
                "pools": {pool: {"version": str(route["version"]), "gpu": route["gpu"],
                                 "price_per_hour": route["price_per_hour"]}
                          for pool, route in entry["pools"].items()},
            })
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model:path}")
    async def get_model(self, model: str, request: Request) -> dict[str, Any]:
        for card in (await self.list_models(request))["data"]:
            if card["id"] == model:
                return card
        raise RequestError(404, f"model {model!r} is not served here", "model", "model_not_found")

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, "chat")

    @app.post("/v1/completions")
    async def text_completions(self, request: Request) -> Response:
        return await self._serve(request, "completions")

    # -- the request path ----------------------------------------------------------
    async def _read_json(self, request: Request) -> Any:
        limit = self._config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body of {declared} bytes is over the "
                               f"{limit}-byte limit", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is over the {limit}-byte limit",
                                   code="request_too_large")
            chunks.append(chunk)
        return parse_json_body(b"".join(chunks))

    async def _serve(self, request: Request, kind: str) -> Response:
        """Answer one completion request; whatever happens, it is recorded exactly once."""
        self._ensure_poller()
        exchange = Exchange(request.headers.get("x-request-id") or uuid.uuid4().hex,
                            time.time(), time.perf_counter())
        try:
            return await self._answer(request, kind, exchange)
        except RequestError as error:
            self._finish(exchange, error.status)
            raise
        except asyncio.CancelledError:
            self._finish(exchange, 499)  # the client went away
            raise
        except BaseException:
            self._finish(exchange, 500)
            raise

    async def _answer(self, request: Request, kind: str, exchange: Exchange) -> Response:
        self._admit(request)
        model_cls, required, accepted = ENDPOINTS[kind]
        body = await self._read_json(request)
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            exchange.model = body["model"]
        check_body(body, accepted, required, self._max_model_len)
        try:
            hints = parse_routing_hints(request.headers)
        except InvalidRoutingHint as error:
            raise RequestError(400, str(error), error.header, "invalid_hint") from None
        model, entry = self._model_entry(body.get("model"))
        exchange.model = model
        exchange.stream = bool(body.get("stream"))
        if self._config.telemetry.log_text:
            exchange.prompt = prompt_text(body)
        features = hints.features(estimate_prompt_tokens(body), requested_max_tokens(body),
                                  self._router.default_tier())
        exchange.features = features
        body["model"] = model
        if exchange.stream and body.get("stream_options") is None:
            body["stream_options"] = {"include_usage": True}
        try:
            parsed = model_cls.model_validate(body)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise RequestError(400, f"invalid value for {param}: {first['msg']}", param) from None
        except VLLMClientError as error:  # vLLM's own cross-field checks
            raise RequestError(400, str(error)[:500], getattr(error, "parameter", None)) from None
        if kind == "chat":
            try:
                parsed = _sanitize_chat_completion_request(parsed)
            except ValueError as error:  # message content that is no text and no content part
                raise RequestError(400, str(error)[:500], "messages") from None

        pools = canary_or_champion(entry, random.random())
        failed_pool = None
        for attempt in (1, 2):
            first_item, stream = await self._dispatch(request, kind, parsed, pools, exchange,
                                                      failed_pool)
            if stream is not None or attempt == 2:
                break
            failed_pool = exchange.pool  # the pool failed before streaming anything: once more
        if isinstance(first_item, ErrorResponse):
            status = int(first_item.error.code or 500)
            if status >= 500 and "context" in first_item.error.message.lower():
                status = 400
            raise RequestError(status, first_item.error.message, None)
        exchange.ttft_s = time.perf_counter() - exchange.started
        headers = {"x-tandem-pool": exchange.pool, "x-tandem-model-version": str(exchange.version)}
        if not isinstance(first_item, str | list) and hasattr(first_item, "model_dump"):
            content = first_item.model_dump()
            content["id"] = exchange.request_id
            exchange.usage = content.get("usage") or {}
            exchange.response = response_text(content) if self._config.telemetry.log_text else None
            cost = self._finish(exchange, 200)
            headers["x-tandem-cost-usd"] = f"{cost:.10f}"
            return JSONResponse(content, headers=headers)
        headers["x-tandem-cost-usd"] = f"{exchange.predicted_cost():.10f}"
        return StreamingResponse(self._relay(stream, exchange), media_type="text/event-stream",
                                 headers=headers)

    async def _dispatch(self, request: Request, kind: str, parsed, pools: dict[str, Any],
                        exchange: Exchange, failed_pool: str | None):
        """Route among `pools` and send once. Returns (first item, stream), or (exception,
        None) when the chosen pool failed before answering anything (the caller may retry
        elsewhere)."""
        now = time.time()
        if failed_pool is not None:
            self._router.failed(failed_pool)
        states = self._router.states(pools, exclude=failed_pool)
        limit = self._config.limits.max_queued_requests
        if all(s.queued >= limit * s.replicas for s in states if s.healthy):
            raise RequestError(503, "every pool's queue is full; retry shortly", code="overloaded")
        try:
            decision = self._router.choose(exchange.features, states, now, exchange.request_id)
        except NoHealthyPool:
            raise RequestError(503, "no healthy pool can take this request") from None
        self._metrics.decision(decision.pool, exchange.model, exchange.features.tier,
                               decision.slo_miss)
        route = pools[decision.pool]
        exchange.routed(decision, route, next(s for s in states if s.name == decision.pool))
        self._router.in_flight[decision.pool] += 1
        try:
            stream = getattr(self._handle(route), kind).remote(
                parsed, RawRequestInfo.from_starlette_request(request))
            first, stream = await _peek_at_generator(stream)
        except BackPressureError:
            self._router.in_flight[decision.pool] -= 1
            exchange.released = True
            raise RequestError(503, f"pool {decision.pool} is at its queue limit; retry shortly",
                               code="overloaded") from None
        except POOL_FAILURES as error:
            self._router.in_flight[decision.pool] -= 1
            exchange.released = True
            if failed_pool is not None:
                raise
            return error, None
        except BaseException:
            self._router.in_flight[decision.pool] -= 1
            exchange.released = True
            raise
        first_item = first[0] if isinstance(first, list) else first
        if isinstance(first_item, ErrorResponse) or hasattr(first_item, "model_dump"):
            self._router.in_flight[decision.pool] -= 1
            exchange.released = True
        return first_item, stream

    async def _relay(self, stream, exchange: Exchange):
        engine_id = None
        status = 200
        pieces: list[str] | None = [] if self._config.telemetry.log_text else None
        try:
            async for packet in _openai_json_wrapper(stream):
                if engine_id is None and packet.startswith("data: {"):
                    engine_id = _chunk_id(packet)
                if engine_id:
                    packet = packet.replace(engine_id, exchange.request_id)
                if '"usage":{"' in packet or '"usage": {"' in packet:
                    exchange.usage = _last_usage(packet) or exchange.usage
                if pieces is not None:
                    pieces.extend(_deltas(packet))
                yield packet
        except POOL_FAILURES:
            status = 502  # the replica died mid-stream: nothing to retry, keep others away
            self._router.failed(exchange.pool)
            raise
        except BaseException:
            status = 499
            raise
        finally:
            if pieces is not None:
                exchange.response = "".join(pieces)
            self._finish(exchange, status)

    def _finish(self, exchange: Exchange, status: int) -> float:
        """Book one answered request: metrics, the router's observation, the request log.
        Returns its estimated cost (USD)."""
        if exchange.finished:
            return exchange.cost_usd
        exchange.finished = True
        elapsed = time.perf_counter() - exchange.started
        exchange.status = status
        if exchange.pool is not None and not exchange.released:
            self._router.in_flight[exchange.pool] -= 1
        if exchange.pool is not None and status == 200:
            exchange.cost_usd = estimate_cost_usd(exchange.price_per_hour, elapsed,
                                                  exchange.concurrency)
            self._router.finished(exchange.state, exchange.features, time.time(),
                                  exchange.cost_usd, exchange.output_tokens(), elapsed * 1e3,
                                  exchange.ttft_ms() if exchange.stream else None,
                                  exchange.tpot_ms(elapsed) if exchange.stream else None)
        labels = {"pool": exchange.pool or "none", "model": exchange.model or "unknown",
                  "model_version": str(exchange.version or "none")}
        ttft_s = exchange.ttft_s if status == 200 and exchange.stream else None
        self._metrics.request_done(labels, str(status), elapsed, ttft_s, exchange.usage,
                                   exchange.cost_usd)
        self._requests.append(exchange.record(elapsed))
        return exchange.cost_usd

    # -- feedback ------------------------------------------------------------------
    @app.post("/v1/feedback")
    async def feedback(self, request: Request) -> Response:
        self._admit(request)
        body = await self._read_json(request)
        try:
            feedback = parse_feedback(body, self._config.telemetry.feedback_scale)
        except FeedbackError as error:
            raise RequestError(error.status, str(error), error.param) from None
        record = await asyncio.to_thread(self._requests.find, feedback.request_id)
        if record is None:
            raise RequestError(404, f"request {feedback.request_id!r} was not answered here",
                               "request_id", "request_not_found")
        created = await asyncio.to_thread(self._feedback.add, feedback, record)
        content = {"object": "feedback", "request_id": feedback.request_id,
                   "feedback_id": feedback.feedback_id, "stored": created}
        return JSONResponse(content, status_code=201 if created else 200)


    # -- administration (admin key) ------------------------------------------------
    @app.get("/admin/routes")
    async def admin_routes(self, request: Request) -> dict[str, Any]:
        """The live route table and this replica's latest routing decisions (`?last=N`)."""
        self._admit(request, ADMIN)
        raw = request.query_params.get("last", "20")
        if not raw.isdigit():
            raise RequestError(400, "'last' must be a non-negative integer", "last")
        return {"epoch": self._epoch, "models": self._table["models"],
                "decisions": self._router.log.records(last=min(int(raw), 1000))}

    @app.post("/admin/promote")
    async def admin_promote(self, request: Request) -> Response:
        """`{"model", "version"}` -> 202 and the id of the Ray job that runs the swap."""
        return await self._admin_swap(request, "promote")

    @app.post("/admin/rollback")
    async def admin_rollback(self, request: Request) -> Response:
        """`{"model"}` -> 202 and the id of the Ray job that swaps back to `previous`."""
        return await self._admin_swap(request, "rollback")

    async def _admin_swap(self, request: Request, action: str) -> Response:
        from tandem.settings import load_settings

        self._admit(request, ADMIN)
        model, version = admin.parse_target(await self._read_json(request), action == "promote")
        self._model_entry(model)  # 404 unless served here
        target = await asyncio.to_thread(admin.check_target, model, version,
                                         load_settings().mlflow_url)
        arguments = [action, model] + ([str(version)] if action == "promote" else [])
        job_id = await asyncio.to_thread(admin.submit, arguments)
        return JSONResponse({"object": "admin.job", "action": action, "model": model,
                             "version": target, "job_id": job_id}, status_code=202)


class Exchange:
    """One completion request as it moves through the ingress, and its request-log record."""

    def __init__(self, request_id: str, wall_time: float, started: float) -> None:
        self.request_id = request_id
        self.wall_time = wall_time
        self.started = started
        self.model: str | None = None
        self.stream = False
        self.features = RequestFeatures(prompt_tokens=0, max_tokens=0)
        self.prompt: str | None = None
        self.response: str | None = None
        self.pool: str | None = None
        self.version: int | None = None
        self.reason = ""
        self.slo_miss: bool | None = None
        self.state: PoolState | None = None
        self.price_per_hour = 0.0
        self.concurrency = 1
        self.predicted_cost_usd: float | None = None
        self.ttft_s: float | None = None
        self.usage: dict[str, Any] = {}
        self.cost_usd = 0.0
        self.status = 0
        self.released = False
        self.finished = False

    def routed(self, decision, route: dict[str, Any], state: PoolState) -> None:
        self.pool = decision.pool
        self.version = int(route["version"])
        self.reason = decision.reason
        self.slo_miss = decision.slo_miss
        self.state = state
        self.price_per_hour = route["price_per_hour"]
        self.concurrency = state.in_flight + state.queued + 1
        self.predicted_cost_usd = decision.predicted_cost_usd
        self.released = False

    def predicted_cost(self) -> float:
        if self.predicted_cost_usd is not None:
            return self.predicted_cost_usd
        return estimate_cost_usd(self.price_per_hour, (self.ttft_s or 0.0) * 10, self.concurrency)

    def ttft_ms(self) -> float | None:
        return None if self.ttft_s is None else self.ttft_s * 1e3

    def output_tokens(self) -> int:
        return int(self.usage.get("completion_tokens") or 0)

    def tpot_ms(self, elapsed_s: float) -> float | None:
        out = self.output_tokens()
        if self.ttft_s is None or out < 2:
            return None
        return (elapsed_s - self.ttft_s) / (out - 1) * 1e3

    def record(self, elapsed_s: float) -> dict[str, Any]:
        """The request-log row (`tandem.telemetry.schema.REQUEST_SCHEMA`)."""
        return {
            "request_id": self.request_id, "time": self.wall_time, "model": self.model or "",
            "model_version": self.version, "pool": self.pool, "tier": self.features.tier,
            "stream": self.stream,
            "prompt_tokens": int(self.usage.get("prompt_tokens") or self.features.prompt_tokens),
            "completion_tokens": self.output_tokens(),
            "ttft_ms": self.ttft_ms() if self.status == 200 and self.stream else None,
            "tpot_ms": self.tpot_ms(elapsed_s) if self.status == 200 and self.stream else None,
            "e2e_ms": elapsed_s * 1e3, "status": self.status, "cost_usd": self.cost_usd,
            "routing_reason": self.reason, "slo_miss": self.slo_miss, "prompt": self.prompt,
            "response": self.response,
        }


def _deltas(packet: str) -> list[str]:
    """Generated text in one SSE packet (completion `text` or chat `delta.content`)."""
    out = []
    for line in packet.split("\n"):
        if not line.startswith("data: {"):
            continue
        try:
            chunk = json.loads(line[len("data: "):])
        except ValueError:
            continue
        for choice in chunk.get("choices") or ():
            text = choice.get("text")
            if text is None:
                text = (choice.get("delta") or {}).get("content")
            if text:
                out.append(text)
    return out


def canary_or_champion(entry: dict[str, Any], draw: float) -> dict[str, Any]:
    """The pools (routes of one version) a request goes to: the canary's when a canary runs
    and `draw` (uniform in [0, 1)) falls within its share, else the champion's."""
    canary = entry.get("canary")
    if canary and canary["pools"] and draw < canary["share"]:
        return canary["pools"]
    return entry["pools"]


def _chunk_id(packet: str) -> str | None:
    try:
        return json.loads(packet.split("\n", 1)[0][len("data: "):]).get("id")
    except ValueError:
        return None


def _last_usage(packet: str) -> dict[str, Any] | None:
    for line in reversed(packet.split("\n")):
        if line.startswith("data: {") and '"usage"' in line:
            try:
                return json.loads(line[len("data: "):]).get("usage")
            except ValueError:
                return None
    return None


TandemIngressDeployment = serve.ingress(app)(TandemIngress)

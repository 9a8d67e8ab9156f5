"""The Tandem ingress: OpenAI-compatible HTTP in front of every pool.

A subclass of `ray.serve.llm`'s `OpenAiIngress` that, per request, validates the
input (OpenAI error bodies, never a 5xx for bad input), asks the pluggable routing
policy (`tandem.routing`) for a pool, streams from that pool's LLMServer
deployment and stamps the response with `x-tandem-pool`,
`x-tandem-model-version` and `x-tandem-cost-usd`. The body `id` is set to the
request id Ray Serve's proxy puts in the `x-request-id` response header, so the
two always agree.

Pools are found through the route table actor (`tandem.serve.routes`), polled
every half second, so a version swap never redeploys the ingress.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from ray import serve
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
from ray.serve.llm.ingress import OpenAiIngress
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse

from tandem.routing import PoolState
from tandem.routing.policy import LeastLoadedPolicy, NoHealthyPool, RoundRobinPolicy
from tandem.serve import routes as route_table
from tandem.serve.metrics import ServeMetrics
from tandem.serve.validation import (
    RequestError,
    accepted_fields,
    check_body,
    error_body,
    estimate_cost_usd,
    request_features,
)

POLL_S = 0.5
POLICIES = {"least-loaded": LeastLoadedPolicy, "round-robin": RoundRobinPolicy}
ENDPOINTS = {
    "chat": (ChatCompletionRequest, "messages", accepted_fields(ChatCompletionRequest)),
    "completions": (CompletionRequest, "prompt", accepted_fields(CompletionRequest)),
}

app = FastAPI(title="Tandem", docs_url=None, redoc_url=None)


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status,
                        headers=headers)


@app.exception_handler(RequestError)
async def _request_error(request: Request, error: RequestError) -> JSONResponse:
    headers = {"retry-after": "1"} if error.status in (429, 503) else None
    return _error(error.status, error.message, error.param, error.code, headers)


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

    def __init__(self, config: dict[str, Any], table: dict[str, Any]) -> None:
        super().__init__(llm_deployments={}, model_cards={})
        from tandem.serve.config import ServeAppConfig

        self._config = ServeAppConfig.model_validate(config)
        self._max_model_len = min(p.engine.max_model_len for p in self._config.pools.values())
        self._policy = POLICIES[self._config.routing_policy]()
        self._replica = f"{os.getpid()}-{id(self)}"
        self._table_actor = route_table.get_or_create(table)
        import ray

        self._epoch, self._table = ray.get(self._table_actor.snapshot.remote(0))
        self._handles: dict[tuple[str, str], Any] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self._busy_s: dict[str, float] = {}
        self._metrics = ServeMetrics()
        self._poller: asyncio.Task | None = None

    # -- route table ---------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_routes())

    async def _poll_routes(self) -> None:
        while True:
            try:
                changed = await self._table_actor.snapshot.remote(self._epoch)
                if changed is not None:
                    self._epoch, self._table = changed
                await self._table_actor.ack.remote(self._replica, self._epoch)
            except Exception:  # the actor restarts or the cluster hiccups: keep the last table
                pass
            await asyncio.sleep(POLL_S)

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

    # -- endpoints -----------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        self._ensure_poller()
        return {"status": "ok", "models": {name: entry["version"]
                                           for name, entry in self._table["models"].items()}}

    @app.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
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
    async def get_model(self, model: str) -> dict[str, Any]:
        for card in (await self.list_models())["data"]:
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
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(400, f"request body is not valid JSON ({error})",
                               code="invalid_json") from None

    async def _serve(self, request: Request, kind: str) -> Response:
        self._ensure_poller()
        started = time.perf_counter()
        model_cls, required, accepted = ENDPOINTS[kind]
        body = await self._read_json(request)
        check_body(body, accepted, required, self._max_model_len)
        model, entry = self._model_entry(body.get("model"))
        features = request_features(body, request.headers)
        body["model"] = model
        if body.get("stream") and body.get("stream_options") is None:
            body["stream_options"] = {"include_usage": True}
        try:
            parsed = model_cls.model_validate(body)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise RequestError(400, f"invalid value for {param}: {first['msg']}", param) from None
        if kind == "chat":
            parsed = _sanitize_chat_completion_request(parsed)

        pools = entry["pools"]
        states = [PoolState(name=name, gpu=route["gpu"], healthy=True, replicas=route["replicas"],
                            in_flight=self._in_flight.get((name, route["app"]), 0), queued=0,
                            price_per_hour=route["price_per_hour"])
                  for name, route in pools.items()]
        try:
            decision = self._policy.pick_pool(features, states, time.time())
        except NoHealthyPool:
            raise RequestError(503, "no healthy pool can take this request") from None
        pool = decision.pool
        route = pools[pool]
        key = (pool, route["app"])
        concurrency = self._in_flight.get(key, 0) + 1
        self._in_flight[key] = concurrency
        labels = {"pool": pool, "model": model, "model_version": str(route["version"])}
        request_id = request.headers.get("x-request-id") or ""
        try:
            stream = getattr(self._handle(route), kind).remote(
                parsed, RawRequestInfo.from_starlette_request(request))
            first, stream = await _peek_at_generator(stream)
        except BaseException:
            self._in_flight[key] -= 1
            self._metrics.request_done(labels, "500", time.perf_counter() - started)
            raise
        first_item = first[0] if isinstance(first, list) else first
        if isinstance(first_item, ErrorResponse):
            self._in_flight[key] -= 1
            status = int(first_item.error.code or 500)
            self._metrics.request_done(labels, str(status), time.perf_counter() - started)
            if status >= 500 and "context" in first_item.error.message.lower():
                status = 400
            raise RequestError(status, first_item.error.message, None)
        ttft_s = time.perf_counter() - started
        headers = {"x-tandem-pool": pool, "x-tandem-model-version": str(route["version"])}

        if not isinstance(first_item, str | list) and hasattr(first_item, "model_dump"):
            self._in_flight[key] -= 1
            content = first_item.model_dump()
            if request_id:
                content["id"] = request_id
            elapsed = time.perf_counter() - started
            self._busy_s[pool] = 0.8 * self._busy_s.get(pool, elapsed) + 0.2 * elapsed
            cost = estimate_cost_usd(route["price_per_hour"], elapsed, concurrency)
            headers["x-tandem-cost-usd"] = f"{cost:.10f}"
            usage = content.get("usage") or {}
            self._metrics.request_done(labels, "200", elapsed, ttft_s, usage, cost)
            return JSONResponse(content, headers=headers)

        predicted = self._busy_s.get(pool, ttft_s * 10)
        cost = estimate_cost_usd(route["price_per_hour"], predicted, concurrency)
        headers["x-tandem-cost-usd"] = f"{cost:.10f}"
        return StreamingResponse(
            self._relay(stream, key, labels, started, ttft_s, cost, request_id),
            media_type="text/event-stream", headers=headers)

    async def _relay(self, stream, key, labels, started, ttft_s, cost, request_id):
        engine_id = None
        usage: dict[str, Any] = {}
        status = "200"
        try:
            async for packet in _openai_json_wrapper(stream):
                if engine_id is None and request_id and packet.startswith("data: {"):
                    engine_id = _chunk_id(packet)
                if engine_id:
                    packet = packet.replace(engine_id, request_id)
                if '"usage":{"' in packet or '"usage": {"' in packet:
                    usage = _last_usage(packet) or usage
                yield packet
        except BaseException:
            status = "499"
            raise
        finally:
            self._in_flight[key] -= 1
            elapsed = time.perf_counter() - started
            pool = labels["pool"]
            self._busy_s[pool] = 0.8 * self._busy_s.get(pool, elapsed) + 0.2 * elapsed
            self._metrics.request_done(labels, status, elapsed, ttft_s, usage, cost)


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

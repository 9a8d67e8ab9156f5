"""The ingress's endpoints, and the wiring of its stages (see the package docstring).

Every endpoint but `/healthz` needs a key: inference keys for `/v1/*`, admin keys for
`/admin/*` (promote, rollback, routing decisions). Errors are OpenAI error bodies, never
FastAPI's bare 422 and never a 5xx for bad input.

Tenants: a request is logged with its key's tenant, and feedback on it is taken only from
that tenant or an admin key; anyone else gets the 404 of an unknown id and nothing is
stored. A client's `x-request-id` names its request only when it is well formed and not
another tenant's (`tandem.serve.request_ids`); otherwise the ingress makes one and returns it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pyarrow import ArrowException
from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import ErrorResponse
from ray.serve.llm.ingress import OpenAiIngress
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse

from tandem.auth import ADMIN, AuthError, load_keys
from tandem.routing.models import LiveQuality, judged_right
from tandem.serve import admin, shared_view
from tandem.serve import routes as route_table
from tandem.serve.ingress.accounting import Accounting
from tandem.serve.ingress.dispatch import Dispatcher
from tandem.serve.ingress.edge import Edge
from tandem.serve.ingress.exchange import Exchange
from tandem.serve.ingress.parse import model_entry, parse_completion
from tandem.serve.ingress.pool_sync import PoolSync
from tandem.serve.ingress.relay import relay
from tandem.serve.limits import RateLimiter
from tandem.serve.metrics import ServeMetrics
from tandem.serve.request_ids import REQUEST_ID_HEADER, new_request_id, well_formed
from tandem.serve.router import PoolRouter
from tandem.serve.routes import CHAT_TEMPLATE_TOKENS
from tandem.serve.validation import RequestError, error_body, response_text
from tandem.telemetry.feedback import (
    FeedbackError,
    FeedbackStore,
    normalized_score,
    parse_feedback,
)
from tandem.telemetry.request_log import RequestLog

FEEDBACK_RETRY_AFTER_S = 5

app = FastAPI(title="Tandem", docs_url=None, redoc_url=None, openapi_url=None)  # no unkeyed schema endpoint


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status,
                        headers=headers)


@app.exception_handler(RequestError)
async def _request_error(request: Request, error: RequestError) -> JSONResponse:
    headers = {"retry-after": str(error.retry_after or 1)} if error.status in (429, 503) else {}
    headers.update(_replaced_id(request))
    return _error(error.status, error.message, error.param, error.code, headers or None)


def _replaced_id(request: Request) -> dict[str, str]:
    """The `x-request-id` header of a request whose id the ingress made (`TandemIngress._serve`
    keeps it on the request's state); none when the client's own id stands."""
    replaced = getattr(request.state, "request_id", None)
    return {REQUEST_ID_HEADER: replaced} if replaced is not None else {}


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
    """OpenAI API + pool choice. Constructed by `tandem.serve.deploy.build_ingress_application`."""

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
        telemetry = self._config.telemetry
        telemetry_root = telemetry.root or str(home / "telemetry")
        self._requests = RequestLog(telemetry_root, flush_rows=telemetry.flush_rows,
                                    flush_interval_s=telemetry.flush_interval_s,
                                    max_buffered_rows=telemetry.max_buffered_rows,
                                    max_buffered_bytes=telemetry.max_buffered_bytes)
        self._feedback = FeedbackStore(telemetry_root)
        limits = self._config.limits
        limiter = RateLimiter(limits.requests_per_s, limits.burst)
        self._edge = Edge(load_keys(home), limiter, self._config.max_body_bytes)
        self._router = PoolRouter(self._config, home / "routing" / "decisions.jsonl")
        metrics = ServeMetrics()
        self._live_quality = LiveQuality()
        self._dispatcher = Dispatcher(self._router, metrics, limits.max_queued_requests,
                                      self._live_quality)
        self._accounting = Accounting(self._router, metrics, self._requests)
        self._pool_sync = PoolSync(route_table.get_or_create(table), shared_view.get_or_create(),
                                   f"{os.getpid()}-{id(self)}", self._router, limiter,
                                   self._dispatcher.handle, metrics)

    def __del__(self) -> None:
        self._requests.close()

    async def check_health(self) -> None:
        self._pool_sync.ensure_running()

    # -- endpoints -----------------------------------------------------------------
    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        self._pool_sync.ensure_running()
        return {"status": "ok", "models": {name: entry["version"]
                                           for name, entry in self._pool_sync.table["models"].items()}}

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> dict[str, Any]:
        self._edge.admit(request)
        self._pool_sync.ensure_running()
        data = []
        for name, entry in self._pool_sync.table["models"].items():
            card = {
                "id": name, "object": "model", "created": 0, "owned_by": "tandem",
                "version": str(entry["version"]),
                "pools": {pool: {"version": str(route["version"]), "gpu": route["gpu"],
                                 "price_per_hour": route["price_per_hour"]}
                          for pool, route in entry["pools"].items()},
            }
            for key in ("students", "student_of", "quality"):  # who answers for a name
                if key in entry:
                    card[key] = entry[key]
            adapter = entry.get("adapter")
            if adapter:  # `parent` as vLLM's own model list names a LoRA's base
                card.update(parent=adapter["base"],
                            adapter_base=f"models:/{adapter['base']}/{adapter['base_version']}")
            data.append(card)
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
    async def _serve(self, request: Request, kind: str) -> Response:
        """Answer one completion request; whatever happens, it is recorded exactly once."""
        self._pool_sync.ensure_running()
        asked = request.headers.get(REQUEST_ID_HEADER)
        exchange = Exchange(asked if asked and well_formed(asked) else new_request_id(),
                            time.time(), time.perf_counter())
        if exchange.request_id != asked:
            request.state.request_id = exchange.request_id
        finish = self._accounting.finish
        try:
            return await self._answer(request, kind, exchange)
        except RequestError as error:
            finish(exchange, error.status)
            raise
        except asyncio.CancelledError:
            finish(exchange, 499)  # the client went away
            raise
        except BaseException:
            finish(exchange, 500)
            raise

    async def _answer(self, request: Request, kind: str, exchange: Exchange) -> Response:
        exchange.tenant = self._edge.admit(request).tenant
        if self._requests.logged_for_another(exchange.request_id, exchange.tenant):
            exchange.request_id = request.state.request_id = new_request_id()
        body = await self._edge.read_json(request)
        log_text = self._config.telemetry.log_text
        table = self._pool_sync.table  # one table for the whole request
        models = table["models"]
        parsed = parse_completion(kind, body, request.headers, models, exchange,
                                  self._max_model_len, self._router.default_tier(), log_text,
                                  table.get(CHAT_TEMPLATE_TOKENS, 0))
        first_item, stream = await self._dispatcher.send(request, kind, parsed, models, exchange)
        if isinstance(first_item, ErrorResponse):
            status = int(first_item.error.code or 500)
            if status >= 500 and "context" in first_item.error.message.lower():
                status = 400
            raise RequestError(status, first_item.error.message, None)
        exchange.ttft_s = time.perf_counter() - exchange.started
        headers = {"x-tandem-pool": exchange.pool, "x-tandem-model-version": str(exchange.version),
                   **_replaced_id(request)}
        if exchange.several_models:
            headers["x-tandem-model"] = f"models:/{exchange.model}/{exchange.version}"
        if exchange.cost_usd is not None:
            headers["x-tandem-cost-usd"] = f"{exchange.cost_usd:.10f}"
        if not isinstance(first_item, str | list) and hasattr(first_item, "model_dump"):
            content = first_item.model_dump()
            content["id"] = exchange.request_id
            exchange.usage = content.get("usage") or {}
            exchange.response = response_text(content) if log_text else None
            self._accounting.finish(exchange, 200)
            return JSONResponse(content, headers=headers)
        exchange.ttft_learned = self._router.first_token(
            exchange.request_id, exchange.pool, time.time(), exchange.ttft_ms())
        return StreamingResponse(relay(stream, exchange, log_text, self._accounting.finish,
                                       self._router.failed),
                                 media_type="text/event-stream", headers=headers)

    # -- feedback ------------------------------------------------------------------
    @app.post("/v1/feedback")
    async def feedback(self, request: Request) -> Response:
        key = self._edge.admit(request)
        body = await self._edge.read_json(request)
        try:
            feedback = parse_feedback(body, self._config.telemetry.feedback_scale)
        except FeedbackError as error:
            raise RequestError(error.status, str(error), error.param) from None
        record = await asyncio.to_thread(self._requests.find, feedback.request_id)
        if record is None or (key.kind != ADMIN and record.get("tenant") != key.tenant):
            # another tenant's request reads as unknown: its id tells the caller nothing
            raise RequestError(404, f"request {feedback.request_id!r} was not answered here",
                               "request_id", "request_not_found")
        try:
            created = await asyncio.to_thread(self._feedback.add, feedback, record, key.tenant)
        except (OSError, ArrowException) as error:
            raise RequestError(503, f"feedback cannot be stored right now ({type(error).__name__});"
                               " nothing was stored, retry later", code="feedback_store_unavailable",
                               retry_after=FEEDBACK_RETRY_AFTER_S) from None
        if created and record.get("model_version") is not None:
            score = normalized_score(feedback.score, self._config.telemetry.feedback_scale)
            self._live_quality.rate(record["model"], int(record["model_version"]),
                                    judged_right(score, feedback.correction, record.get("response")),
                                    key.tenant)
        content = {"object": "feedback", "request_id": feedback.request_id,
                   "feedback_id": feedback.feedback_id, "stored": created}
        return JSONResponse(content, status_code=201 if created else 200)

    # -- administration (admin key) ------------------------------------------------
    @app.get("/admin/routes")
    async def admin_routes(self, request: Request) -> dict[str, Any]:
        """The live route table, this replica's latest routing decisions (`?last=N`) and
        what the pools' engines last reported of their batch."""
        self._edge.admit(request, ADMIN)
        raw = request.query_params.get("last", "20")
        if not raw.isdigit():
            raise RequestError(400, "'last' must be a non-negative integer", "last")
        return {"epoch": self._pool_sync.epoch, "models": self._pool_sync.table["models"],
                "decisions": self._router.log.records(last=min(int(raw), 1000)),
                "engines": self._router.engine_reports(time.time())}

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

        self._edge.admit(request, ADMIN)
        model, version = admin.parse_target(await self._edge.read_json(request),
                                            action == "promote")
        models = self._pool_sync.table["models"]
        model_entry(models, model)  # 404 unless served here
        target = await asyncio.to_thread(admin.check_target, model, version,
                                         load_settings().mlflow_url)
        await asyncio.to_thread(admin.check_fits, models, model, target,
                                load_settings().mlflow_url)
        arguments = [action, model] + ([str(version)] if action == "promote" else [])
        job_id = await asyncio.to_thread(admin.submit, arguments)
        return JSONResponse({"object": "admin.job", "action": action, "model": model,
                             "version": target, "job_id": job_id}, status_code=202)


TandemIngressDeployment = serve.ingress(app)(TandemIngress)

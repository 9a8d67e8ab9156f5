"""Request ids: a client's own `x-request-id` only when it is safe to keep.

A request id is how feedback finds its request, so a client must not choose one that is
costly to store or look up (300 characters, `../../etc/passwd`), nor one another tenant's
request already has (its feedback would then reach the wrong request). The ingress keeps a
client's id only when it matches `[A-Za-z0-9._:-]{1,128}` and is not another tenant's,
and otherwise makes one (`new_request_id`) and returns it in `x-request-id` and the body.

Ray Serve echoes the request's `x-request-id` into every response (its
`RequestIdMiddleware`, applied after the app's own headers), so a replaced id would come
back twice. `RequestIdGuard`, installed through Ray Serve's
`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` (`middlewares`), strips a malformed id
before Serve reads it (Serve then makes a fresh one) and keeps only the first
`x-request-id` of a response, the ingress's own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
MIDDLEWARES = "tandem.serve.request_ids.middlewares"  # for RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEADER = REQUEST_ID_HEADER.encode()


def well_formed(request_id: str) -> bool:
    return _WELL_FORMED.fullmatch(request_id) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdGuard:
    """ASGI middleware: no malformed `x-request-id` into the app, one out of it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["headers"] = [(name, value) for name, value in scope["headers"]
                            if name.lower() != _HEADER
                            or well_formed(value.decode("latin-1"))]

        async def send_one_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen = False
                kept = []
                for name, value in message.get("headers", ()):
                    if name.lower() == _HEADER:
                        if seen:
                            continue
                        seen = True
                    kept.append((name, value))
                message["headers"] = kept
            await send(message)

        await self.app(scope, receive, send_one_id)


def middlewares() -> list[Any]:
    """What `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` names: Serve's HTTP servers wrap
    their apps in these, outside its own request-id middleware."""
    from starlette.middleware import Middleware

    return [Middleware(RequestIdGuard)]

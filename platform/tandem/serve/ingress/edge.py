"""The first stage of a request: who calls, whether they may, and what they sent.

An API key allowed to do what the endpoint needs (`tandem.auth`), within its rate limit
(429 with `Retry-After`), and a body no larger than `max_body_bytes` (413, checked on the
declared length and again while reading) that is strict JSON (400).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from tandem.auth import INFERENCE, ApiKey, authenticate
from tandem.serve.limits import RateLimiter
from tandem.serve.validation import RequestError, parse_json_body


class Edge:
    """Authentication, rate limits and body reading for one ingress replica."""

    def __init__(self, keys, limiter: RateLimiter, max_body_bytes: int) -> None:
        self._keys = keys
        self._limiter = limiter
        self._max_body_bytes = max_body_bytes

    def admit(self, request: Request, needed: str = INFERENCE) -> ApiKey:
        """The caller's key, if it may do `needed` and is within its rate limit."""
        key = authenticate(request.headers.get("authorization"), self._keys, needed)
        wait = self._limiter.retry_after(key.name, time.monotonic(), key.requests_per_s, key.burst)
        if wait:
            raise RequestError(429, f"rate limit of key {key.name!r} reached; retry in {wait} s",
                               code="rate_limit_exceeded", retry_after=wait)
        return key

    async def read_json(self, request: Request) -> Any:
        limit = self._max_body_bytes
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

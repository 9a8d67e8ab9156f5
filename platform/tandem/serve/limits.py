"""Per-key rate limits: a token bucket per API key, held by each ingress replica.

A request takes one token; a key's bucket refills at `requests_per_s` up to `burst`.
An empty bucket is a 429 whose `Retry-After` says when the next token arrives. With
several ingress replicas each holds its own buckets, so a key's effective limit is the
configured one times the replica count (Serve spreads a key's requests over them).
"""

from __future__ import annotations

import math


class TokenBucket:
    def __init__(self, requests_per_s: float, burst: float, now: float) -> None:
        self.rate = requests_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until there is one."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key name; a key without its own limit gets the default."""

    def __init__(self, requests_per_s: float, burst: float) -> None:
        self.default = (requests_per_s, burst)
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str, now: float, requests_per_s: float | None = None,
                    burst: float | None = None) -> int:
        """0 when `key` may go ahead, else whole seconds to wait (for `Retry-After`)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(requests_per_s or self.default[0],
                                                      burst or self.default[1], now)
        wait = bucket.take(now)
        return math.ceil(wait) if wait > 0 else 0

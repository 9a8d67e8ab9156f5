"""Per-key rate limits: a token bucket per API key, shared by every ingress replica.

A request takes one token; a key's bucket refills at `requests_per_s` up to `burst`.
An empty bucket is a 429 whose `Retry-After` says when the next token arrives.

Each ingress replica admits from its own copy of a key's bucket, on the request path,
and syncs with the deployment's shared view (`tandem.serve.shared_view`) at least every
second: it reports what it admitted and takes off its buckets what the other replicas
admitted meanwhile. Between two syncs the replicas do not see each other's admissions,
so with N replicas at most (N - 1) x (burst + requests_per_s x 1 s) requests are
admitted beyond the limit; a bucket goes negative by what was overshot (down to one
burst), which holds the key back until it is paid off. One replica is exact.
"""

from __future__ import annotations

import math
from collections import Counter


class TokenBucket:
    def __init__(self, requests_per_s: float, burst: float, now: float) -> None:
        self.rate = requests_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def refill(self, now: float) -> float:
        """Tokens at `now` (may be negative: an overshoot not yet paid off)."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        return self.tokens

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until there is one."""
        if self.refill(now) >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def debit(self, count: float, now: float) -> None:
        """Take `count` tokens admitted elsewhere; at most one burst of debt is kept."""
        self.tokens = max(-self.burst, self.refill(now) - count)


class RateLimiter:
    """Buckets by key name; a key without its own limit gets the default."""

    def __init__(self, requests_per_s: float, burst: float) -> None:
        self.default = (requests_per_s, burst)
        self._buckets: dict[str, TokenBucket] = {}
        self._unreported: Counter[str] = Counter()  # admitted since the last `report`

    def retry_after(self, key: str, now: float, requests_per_s: float | None = None,
                    burst: float | None = None) -> int:
        """0 when `key` may go ahead, else whole seconds to wait (for `Retry-After`)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(requests_per_s or self.default[0],
                                                      burst or self.default[1], now)
        wait = bucket.take(now)
        if wait > 0:
            return math.ceil(wait)
        self._unreported[key] += 1
        return 0

    def report(self) -> dict[str, tuple[int, float, float]]:
        """key -> (requests admitted since the last report, rate, burst): what the shared
        view debits from the deployment's buckets."""
        admitted = {key: (count, self._buckets[key].rate, self._buckets[key].burst)
                    for key, count in self._unreported.items()}
        self._unreported.clear()
        return admitted

    def unreport(self, admitted: dict[str, tuple[int, float, float]]) -> None:
        """A report that did not reach the shared view goes out with the next one."""
        for key, (count, _, _) in admitted.items():
            self._unreported[key] += count

    def apply(self, levels: dict[str, tuple[float, float, float]],
              admitted_by_others: dict[str, int], now: float) -> None:
        """What the shared view returned: every bucket takes the requests the other replicas
        admitted since the last sync; a key this replica has no bucket for starts from the
        deployment's level, key -> (tokens, rate, burst)."""
        for key, (tokens, rate, burst) in levels.items():
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate, burst, now)
                bucket.tokens = tokens
            elif key in admitted_by_others:
                bucket.debit(admitted_by_others[key], now)

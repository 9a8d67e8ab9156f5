"""One view of the whole deployment for every ingress replica: rate limits, load, spend.

Each ingress replica routes and admits from what it knows itself, on the request path,
and syncs with this one small named actor every half second, off it (see
`tandem.serve.ingress.watch`):

- **Rate limits.** A replica reports the requests it admitted per key since its last
  sync; the view debits the deployment's one bucket per key and returns every bucket's
  level (`tandem.serve.limits` states the bound on what is admitted between two syncs).
- **Load and spend.** A replica reports its requests in flight and the output tokens they
  still owe per pool, and its spend per hour per tier; it gets back the sum over the
  *other* replicas heard from in the last `LIVE_S` seconds, which the router adds to its
  own (`tandem.serve.router.PoolRouter.states`, `_spend_rates`). What it sees of the
  others is at most one sync old.

Without the actor (not yet started, or restarting) each replica keeps going on its own
view: limits and load per replica, as before there was one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tandem.serve.limits import TokenBucket

ACTOR_NAME = "tandem-ingress-view"
NAMESPACE = "tandem"
LIVE_S = 5.0  # a replica not heard from for this long is gone: its load no longer counts

Load = dict[str, dict[str, float]]  # {"in_flight": {pool: n}, "owed_output_tokens": {...}, ...}


class SharedView:
    """Actor body. `clock` is injectable so the unit tests can move time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._loads: dict[str, tuple[float, Load]] = {}  # replica -> (heard at, its load)

    def sync(self, replica: str, admitted: dict[str, tuple[int, float, float]],
             load: Load) -> dict[str, Any]:
        """Take `replica`'s admissions per key (count, rate, burst) and its own load; return
        `{"limits": {key: (tokens, rate, burst)}, "others": load summed over the other live
        replicas, "replicas": live replicas}`."""
        now = self._clock()
        for key, (count, rate, burst) in admitted.items():
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = self._buckets[key] = TokenBucket(rate, burst, now)
            bucket.debit(count, now)
        self._loads[replica] = (now, load)
        for name in [name for name, (heard, _) in self._loads.items() if now - heard > LIVE_S]:
            del self._loads[name]
        others: Load = {}
        for name, (_, their_load) in self._loads.items():
            if name == replica:
                continue
            for kind, values in their_load.items():
                summed = others.setdefault(kind, {})
                for item, value in values.items():
                    summed[item] = summed.get(item, 0) + value
        limits = {key: (bucket.refill(now), bucket.rate, bucket.burst)
                  for key, bucket in self._buckets.items()}
        return {"limits": limits, "others": others, "replicas": len(self._loads)}


def get_or_create():
    """Handle of the view actor, created detached if missing."""
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=-1)(SharedView)
    return actor_cls.options(name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True).remote()


def lookup():
    import ray

    try:
        return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None

"""One view of the whole deployment for every ingress replica: rate limits, load, spend.

Each ingress replica routes and admits from what it knows itself, on the request path,
and syncs with this one small named actor every half second, off it (see
`tandem.serve.ingress.pool_sync`):

- **Rate limits.** A replica reports the requests it admitted per key since its last
  sync; it gets back what the other replicas admitted per key meanwhile, which its own
  buckets then take (`tandem.serve.limits` states the bound on what is admitted between
  two syncs), and the level of the deployment's bucket of every key, from which a replica
  starts a key it has not seen.
- **Load and spend.** A replica reports its requests in flight and the output tokens they
  still owe per pool, and its spend per hour per tier; it gets back the sum over the
  *other* replicas heard from in the last `LIVE_S` seconds, which the router adds to its
  own (`tandem.serve.router.PoolRouter.states`, `_spend_rates`). What it sees of the
  others is at most one sync old.
- **Engines.** Each pool replica's engine reports its batch every quarter second
  (`tandem.serve.engine_load`); a sync returns every engine's last report, which the
  router uses while it is under a second old.

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
        self._admitted: dict[str, int] = {}  # key -> requests admitted by every replica, ever
        self._seen: dict[str, dict[str, int]] = {}  # replica -> _admitted at its last sync
        self._engines: dict[tuple, tuple[float, tuple]] = {}  # engine -> (heard at, report)

    def report_engine(self, engine: tuple, load: tuple) -> None:
        """Keep an engine's latest report (`tandem.serve.engine_load.EngineReporter`)."""
        self._engines[engine] = (self._clock(), load)

    def sync(self, replica: str, admitted: dict[str, tuple[int, float, float]],
             load: Load) -> dict[str, Any]:
        """Take `replica`'s admissions per key (count, rate, burst) and its own load; return
        `{"limits": {key: (tokens, rate, burst)}, "admitted_by_others": {key: requests since
        this replica's last sync}, "others": load summed over the other live replicas,
        "replicas": live replicas, "engines": [(engine, its last report)]}`."""
        now = self._clock()
        for key, (count, rate, burst) in admitted.items():
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = self._buckets[key] = TokenBucket(rate, burst, now)
            bucket.debit(count, now)
            self._admitted[key] = self._admitted.get(key, 0) + count
        seen = self._seen.get(replica)
        by_others = {}
        if seen is not None:  # a replica's first sync starts its unseen keys from the levels
            for key, total in self._admitted.items():
                count = total - seen.get(key, 0) - admitted.get(key, (0,))[0]
                if count:
                    by_others[key] = count
        self._seen[replica] = dict(self._admitted)
        self._loads[replica] = (now, load)
        for name in [name for name, (heard, _) in self._loads.items() if now - heard > LIVE_S]:
            del self._loads[name]
            self._seen.pop(name, None)
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
        for engine in [key for key, (heard, _) in self._engines.items() if now - heard > LIVE_S]:
            del self._engines[engine]
        return {"limits": limits, "admitted_by_others": by_others, "others": others,
                "replicas": len(self._loads),
                "engines": [(engine, load) for engine, (_, load) in self._engines.items()]}


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

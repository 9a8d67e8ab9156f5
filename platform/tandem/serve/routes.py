"""The live routing table: model -> pool -> (version, Serve app, deployment).

It lives in one named Ray actor so every ingress replica (and a restarted one)
sees the same table, and `tandem promote` can switch traffic without
redeploying the ingress. Ingress replicas poll it and acknowledge each epoch;
a swap waits for the acknowledgement before it drains the old deployment.
"""

from __future__ import annotations

import time
from typing import Any

ACTOR_NAME = "tandem-route-table"
# the table's count of tokens the served model's chat template adds (same tokenizer for its
# adapters and students), for the ingress's prompt-length estimate
CHAT_TEMPLATE_TOKENS = "chat_template_tokens"
NAMESPACE = "tandem"


class RouteTable:
    """Actor body: `{"models": {model: {"version": int, "pools": {pool: Route dict},
    "canary": {"version": int, "share": float, "pools": {...}} (only during a canary)}}}`."""

    def __init__(self, table: dict[str, Any] | None = None) -> None:
        self._table: dict[str, Any] = table or {"models": {}}
        self._epoch = 1
        self._acks: dict[str, tuple[int, float]] = {}
        self._in_flight: dict[str, dict[str, int]] = {}  # replica -> app -> requests

    def epoch(self) -> int:
        return self._epoch

    def snapshot(self, known_epoch: int = 0) -> tuple[int, dict[str, Any]] | None:
        """The table if it changed since `known_epoch`, else None."""
        if known_epoch == self._epoch:
            return None
        return self._epoch, self._table

    def replace(self, table: dict[str, Any]) -> int:
        self._table = table
        self._epoch += 1
        return self._epoch

    def set_pool(self, model: str, pool: str, route: dict[str, Any] | None) -> int:
        """Point one pool of `model` at `route` (None removes the pool)."""
        pools = self._table["models"].setdefault(model, {"version": route and route["version"],
                                                         "pools": {}})["pools"]
        if route is None:
            pools.pop(pool, None)
        else:
            pools[pool] = route
        self._epoch += 1
        return self._epoch

    def set_canary(self, model: str, canary: dict[str, Any] | None) -> int:
        """Send a share of `model`'s requests to another version:
        `{"version": int, "share": float, "pools": {pool: Route dict}}`; None ends it."""
        if canary is None:
            self._table["models"][model].pop("canary", None)
        else:
            self._table["models"][model]["canary"] = canary
        self._epoch += 1
        return self._epoch

    def set_model(self, model: str, entry: dict[str, Any]) -> int:
        """Replace `model`'s whole entry (an adapter's swap: same pools, new version)."""
        self._table["models"][model] = entry
        self._epoch += 1
        return self._epoch

    def set_quality(self, model: str, quality: dict[str, float]) -> int:
        """`model`'s exact match per tier (a student's, or its teacher's), for the router."""
        self._table["models"][model]["quality"] = quality
        self._epoch += 1
        return self._epoch

    def set_version(self, model: str, version: int) -> int:
        self._table["models"][model]["version"] = version
        self._epoch += 1
        return self._epoch

    def ack(self, replica: str, epoch: int, in_flight: dict[str, int] | None = None) -> None:
        """`replica` has applied `epoch` and holds `in_flight` requests per Serve app."""
        self._acks[replica] = (epoch, time.time())
        self._in_flight[replica] = dict(in_flight or {})

    def acked(self, epoch: int, within_s: float = 30.0) -> bool:
        """True once every ingress replica heard from lately has applied `epoch`."""
        now = time.time()
        live = [acked for acked, seen in self._acks.values() if now - seen < within_s]
        return bool(live) and all(acked >= epoch for acked in live)

    def in_flight(self, app: str, epoch: int, within_s: float = 30.0) -> int | None:
        """Requests the ingress replicas heard from lately hold on `app`, as each reported
        after applying `epoch`; None while some replica has not reported since."""
        now = time.time()
        total = 0
        for replica, (acked, seen) in self._acks.items():
            if now - seen >= within_s:
                continue
            if acked < epoch:
                return None
            total += self._in_flight.get(replica, {}).get(app, 0)
        return total


def canary_or_champion(entry: dict[str, Any], draw: float) -> dict[str, Any]:
    """The version a request goes to (a dict with its `pools`, and `adapter` for an adapter):
    the canary when one runs and `draw` (uniform in [0, 1)) falls within its share, else the
    champion (`entry` itself)."""
    canary = entry.get("canary")
    if canary and canary["pools"] and draw < canary["share"]:
        return canary
    return entry


def get_or_create(table: dict[str, Any] | None = None):
    """Handle of the table actor, created detached (with `table`) if missing."""
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(RouteTable)
    return actor_cls.options(name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True).remote(table)


def lookup():
    import ray

    try:
        return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None

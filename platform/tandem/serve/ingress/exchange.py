"""One completion request as it moves through the ingress, and its request-log row.

Once routed, the request's targets, the prediction and the routing reason are its
`Decision`'s, read from there for the outcome and the row (`ttft_target_ms`,
`predicted_ttft_ms`); what the ingress measured is its own (`ttft_ms`)."""

from __future__ import annotations

from typing import Any

from tandem.routing import Decision, PoolState, RequestFeatures
from tandem.routing.outcome import slo_met


class Exchange:
    """What the stages learn about one request; `record` turns it into its request-log row."""

    def __init__(self, request_id: str, wall_time: float, started: float) -> None:
        self.request_id = request_id
        self.tenant: str | None = None  # of the caller's key, once admitted
        self.wall_time = wall_time
        self.started = started
        self.model: str | None = None
        self.stream = False
        self.features = RequestFeatures(prompt_tokens=0, max_tokens=0)
        self.prompt: str | None = None
        self.response: str | None = None
        self.pool: str | None = None
        self.version: int | None = None
        self.decision: Decision | None = None  # the routing decision it was last sent on
        self.state: PoolState | None = None
        self.ttft_s: float | None = None
        self.ttft_learned = False  # the router learned the TTFT at the first token
        self.usage: dict[str, Any] = {}
        self.cost_usd: float | None = None  # see `PoolRouter.price`
        self.status = 0
        self.released = False
        self.finished = False
        self.app: str | None = None  # the Serve application of the pool it was sent to
        self.several_models = False  # routed across a teacher and its students

    def routed(self, decision: Decision, route: dict[str, Any], state: PoolState,
               cost_usd: float | None) -> None:
        """Sent to `decision.pool` against the decision's targets, priced at `cost_usd`."""
        self.decision = decision
        self.pool = decision.pool
        self.app = route["app"]
        self.version = int(route["version"])
        self.state = state
        self.cost_usd = cost_usd
        self.released = False

    def charged_usd(self) -> float:
        """What the request is booked at: its price when answered (200), else nothing."""
        return (self.cost_usd or 0.0) if self.status == 200 else 0.0

    def ttft_ms(self) -> float | None:
        return None if self.ttft_s is None else self.ttft_s * 1e3

    def output_tokens(self) -> int:
        return int(self.usage.get("completion_tokens") or 0)

    def tpot_ms(self, elapsed_s: float) -> float | None:
        out = self.output_tokens()
        if self.ttft_s is None or out < 2:
            return None
        return (elapsed_s - self.ttft_s) / (out - 1) * 1e3

    def slo_met(self, elapsed_s: float) -> bool | None:
        """Whether what was measured met the targets it was routed against (None: not routed)."""
        decision = self.decision
        if decision is None:
            return None
        return slo_met(self.status, self.stream, decision.ttft_target_ms,
                       decision.tpot_target_ms, self.ttft_ms(), self.tpot_ms(elapsed_s),
                       elapsed_s * 1e3, self.output_tokens())

    def record(self, elapsed_s: float) -> dict[str, Any]:
        """The request-log row (`tandem.telemetry.schema.REQUEST_SCHEMA`)."""
        decision = self.decision
        routed = decision is not None
        return {
            "request_id": self.request_id, "time": self.wall_time, "model": self.model or "",
            "model_version": self.version, "pool": self.pool, "tier": self.features.tier,
            "stream": self.stream,
            "prompt_tokens": int(self.usage.get("prompt_tokens") or self.features.prompt_tokens),
            "completion_tokens": self.output_tokens(),
            "ttft_ms": self.ttft_ms() if self.status == 200 and self.stream else None,
            "tpot_ms": self.tpot_ms(elapsed_s) if self.status == 200 and self.stream else None,
            "e2e_ms": elapsed_s * 1e3, "status": self.status,
            "cost_usd": self.charged_usd(),
            "routing_reason": decision.reason if routed else "",
            "ttft_target_ms": decision.ttft_target_ms if routed else None,
            "tpot_target_ms": decision.tpot_target_ms if routed else None,
            "predicted_ttft_ms": decision.predicted_ttft_ms if routed else None,
            "predicted_tpot_ms": decision.predicted_tpot_ms if routed else None,
            "predicted_slo_miss": decision.predicted_slo_miss if routed else None,
            "slo_met": self.slo_met(elapsed_s),
            "prompt": self.prompt, "response": self.response, "tenant": self.tenant,
        }

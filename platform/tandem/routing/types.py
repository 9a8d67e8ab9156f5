"""Plain data a routing policy reads and returns.

Dataclasses (frozen, but for `Decision`) rather than pydantic models: they are built
per request on the hot path (microseconds matter) and never come from user input directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class RequestFeatures:
    """What the router knows about a request before it runs.

    `requested_ttft_ms` and `requested_tpot_ms` are what the request asked for (its
    `x-tandem-*` headers), None where it left them to its tier; the targets it is routed and
    judged against are the decision's (`Decision.ttft_target_ms`).
    """

    prompt_tokens: int
    max_tokens: int
    requested_ttft_ms: float | None = None
    requested_tpot_ms: float | None = None
    tier: str = "standard"
    max_cost_usd: float | None = None
    min_quality: float | None = None  # exact match in [0, 1] the answering model must reach


@dataclass(frozen=True, slots=True)
class PoolState:
    """One pool (all replicas of one GPU type serving a model) as the caller last saw it."""

    name: str
    gpu: str
    healthy: bool
    replicas: int
    in_flight: int  # requests admitted to a batch, summed over replicas
    queued: int  # requests waiting for a batch slot
    price_per_hour: float  # one replica
    predicted_ttft_ms: float | None = None
    predicted_tpot_ms: float | None = None
    # max_tokens of the requests in flight and queued, summed (0: not known): how long
    # the requests ahead of a new one may still hold their batch slots
    owed_output_tokens: int = 0
    # > 0: no replica runs and autoscaling will start one; a request sent now waits about
    # this long before the pool's first replica serves (0: warm)
    cold_start_ms: float = 0.0
    # what the pool's engines reported of their batch under a second ago (summed over
    # replicas, as `in_flight`): requests running and waiting, KV cache in use (0..1), mean
    # gap between a running request's tokens lately. None: no fresh report
    engine_running: float | None = None
    engine_waiting: float | None = None
    kv_cache_usage: float | None = None
    engine_step_ms: float | None = None

    @property
    def load_per_replica(self) -> float:
        return (self.in_flight + self.queued) / max(1, self.replicas)

    @property
    def mean_owed_output(self) -> float:
        """Mean max_tokens of the requests in flight and queued; 0 when not known."""
        ahead = self.in_flight + self.queued
        return self.owed_output_tokens / ahead if self.owed_output_tokens > 0 and ahead else 0.0


class Candidate(NamedTuple):
    """What a policy predicted for one pool it considered (a tuple: built per pool per request)."""

    pool: str
    predicted_ttft_ms: float
    predicted_tpot_ms: float
    predicted_cost_usd: float
    meets_slo: bool  # both latency targets, by prediction
    within_cost: bool  # the request's max cost, by prediction (True when it sets none)


@dataclass(slots=True)
class Decision:
    """The chosen pool, why, the targets it was chosen against and what the policy expects
    the pool to deliver.

    The one home of a request's latency targets once routed (`ttft_target_ms`,
    `tpot_target_ms`: the request's own, else its tier's): the ingress, the request log, the
    decisions log and the SLO outcome read them here. A policy that knows no tiers leaves
    them None and `tandem.serve.router.PoolRouter.choose` fills them from the routing config.

    Not frozen, unlike the rest: `tandem.routing.models.pick_model_pool` names the model on
    the decision the pool policy just made rather than copy it (the router's hot path), and
    the router fills the targets of a tier-blind policy's decision the same way.

    `predicted_slo_miss` is True when the policy knowingly chose a pool predicted to miss the
    request's latency targets (none could meet them, or a budget cap spilled it);
    `candidates` holds the prediction for every pool predicted, for `tandem route explain`.
    """

    pool: str
    reason: str
    ttft_target_ms: float | None = None
    tpot_target_ms: float | None = None
    predicted_ttft_ms: float | None = None
    predicted_tpot_ms: float | None = None
    predicted_cost_usd: float | None = None
    predicted_slo_miss: bool = False
    candidates: tuple[Candidate, ...] = ()
    model: str | None = None  # the registered model chosen, when several serve one name

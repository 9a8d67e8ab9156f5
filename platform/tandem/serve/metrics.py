"""Tandem's own Prometheus metrics, exported through Ray's metrics endpoint.

Per pool and model version: requests by status, TTFT, time per output token, end-to-end
latency, tokens in and out, and cost (each answer's x-tandem-cost-usd). Per model, pool
and tier: SLO outcomes judged from measurements (`slo_misses` over `slo_judged`) beside
the router's predicted misses. Per pool: its price and running replicas, whose product
is the fleet's rent, and whether the router takes it (up: not marked down). Per tier:
its spend and its budget, for the alert on a tier over budget. vLLM's engine metrics
come from the LLMServer deployments themselves (`log_engine_metrics`). Ray prefixes
every name with `ray_`, e.g. `ray_tandem_requests_total`; `deploy/prometheus` holds the
rules over them.
"""

from __future__ import annotations

from typing import Any

TAGS = ("pool", "model", "model_version")
LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
TPOT_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5]


class ServeMetrics:
    """Counters and histograms the ingress updates once per finished request."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.requests = Counter("tandem_requests_total", "Requests answered, by status.",
                                tag_keys=(*TAGS, "status"))
        self.ttft = Histogram("tandem_ttft_seconds", "Time to first token.",
                              boundaries=LATENCY_BUCKETS_S, tag_keys=TAGS)
        self.tpot = Histogram("tandem_tpot_seconds", "Time per output token after the first.",
                              boundaries=TPOT_BUCKETS_S, tag_keys=TAGS)
        self.e2e = Histogram("tandem_e2e_seconds", "End-to-end request latency.",
                             boundaries=LATENCY_BUCKETS_S, tag_keys=TAGS)
        self.tokens = Counter("tandem_tokens_total", "Prompt (in) and completion (out) tokens.",
                              tag_keys=(*TAGS, "direction"))
        self.cost = Counter("tandem_cost_usd_total", "Rent of the replica time answered "
                            "requests take (their x-tandem-cost-usd), USD.",
                            tag_keys=TAGS)
        self.decisions = Counter("tandem_routing_decisions_total", "Routing decisions per pool.",
                                 tag_keys=("pool", "model", "tier"))
        slo_tags = ("model", "pool", "tier")
        self.slo_misses = Counter("tandem_slo_misses_total", "Requests whose measured latency "
                                  "missed their targets.", tag_keys=slo_tags)
        self.slo_judged = Counter("tandem_slo_judged_total", "Requests judged against latency "
                                  "targets (200s with a target).", tag_keys=slo_tags)
        self.slo_predicted_misses = Counter(
            "tandem_slo_predicted_misses_total", "Requests routed to a pool predicted to miss "
            "their latency targets.", tag_keys=slo_tags)
        self.price = Gauge("tandem_pool_price_per_hour", "Price of one replica of the pool, "
                           "USD/hour.", tag_keys=("pool",))
        self.replicas = Gauge("tandem_pool_replicas", "Running replicas of the pool.",
                              tag_keys=("pool",))
        self.up = Gauge("tandem_pool_up", "1 while the router sends the pool traffic (a cold "
                        "pool included), 0 while it is marked down.", tag_keys=("pool",))
        self.tier_cost = Counter("tandem_tier_cost_usd_total", "Cost of answered requests per "
                                 "tier (their x-tandem-cost-usd), USD.", tag_keys=("tier",))
        self.tier_budget = Gauge("tandem_tier_budget_per_hour", "A tier's spend cap, USD/hour "
                                 "(tiers with one).", tag_keys=("tier",))
        self.request_log_dropped = Counter(
            "tandem_request_log_dropped_total", "Request records not logged: past the buffer "
            "cap while the store failed (or malformed).")

    def decision(self, pool: str, model: str, tier: str, predicted_slo_miss: bool) -> None:
        self.decisions.inc(1, {"pool": pool, "model": model, "tier": tier})
        if predicted_slo_miss:
            self.slo_predicted_misses.inc(1, {"model": model, "pool": pool, "tier": tier})

    def slo_outcome(self, model: str, pool: str, tier: str, met: bool | None) -> None:
        """Count a request judged against its targets (`met` None: not judged)."""
        if met is None:
            return
        tags = {"model": model, "pool": pool, "tier": tier}
        self.slo_judged.inc(1, tags)
        if not met:
            self.slo_misses.inc(1, tags)

    def pool(self, pool: str, price_per_hour: float, running_replicas: int, up: bool) -> None:
        self.price.set(price_per_hour, {"pool": pool})
        self.replicas.set(running_replicas, {"pool": pool})
        self.up.set(1 if up else 0, {"pool": pool})

    def budgets(self, per_tier: dict[str, float]) -> None:
        for tier, budget in per_tier.items():
            self.tier_budget.set(budget, {"tier": tier})

    def request_done(self, labels: dict[str, str], status: str, e2e_s: float,
                     ttft_s: float | None = None, usage: dict[str, Any] | None = None,
                     cost_usd: float = 0.0, tier: str | None = None) -> None:
        """Count one answered request; `ttft_s` only for streamed ones (a whole response
        arriving at once has no observable first token)."""
        self.requests.inc(1, {**labels, "status": status})
        self.e2e.observe(e2e_s, labels)
        usage = usage or {}
        out = int(usage.get("completion_tokens") or 0)
        if ttft_s is not None:
            self.ttft.observe(ttft_s, labels)
            if out > 1:
                self.tpot.observe((e2e_s - ttft_s) / (out - 1), labels)
        if usage.get("prompt_tokens"):
            self.tokens.inc(int(usage["prompt_tokens"]), {**labels, "direction": "in"})
        if out:
            self.tokens.inc(out, {**labels, "direction": "out"})
        if cost_usd > 0:
            self.cost.inc(cost_usd, labels)
            if tier is not None:
                self.tier_cost.inc(cost_usd, {"tier": tier})

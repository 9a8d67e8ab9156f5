"""The ingress books SLO outcomes from what it measured, not from the router's prediction.

A real `PoolRouter` (the local Serve config) and a real request log in a temporary
directory; the metrics seam is a recorder with `ServeMetrics`' two methods."""

from __future__ import annotations

import time
from pathlib import Path

from tandem.perf import pool_constants, request_cost_usd
from tandem.routing import RequestFeatures
from tandem.serve.config import load_serve_config
from tandem.serve.ingress.accounting import Accounting
from tandem.serve.ingress.exchange import Exchange
from tandem.serve.router import PoolRouter
from tandem.telemetry.request_log import RequestLog, read_requests

REPO = Path(__file__).resolve().parents[3]
ROUTES = {"fast": {"pool": "fast", "version": 1, "app": "a", "deployment": "d", "gpu": "cpu",
                   "price_per_hour": 0.40, "replicas": 1}}


class RecordedMetrics:
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, str, bool | None]] = []

    def slo_outcome(self, model: str, pool: str, tier: str, met: bool | None) -> None:
        self.outcomes.append((model, pool, tier, met))

    def request_done(self, *args, **kwargs) -> None:
        pass


def test_a_request_slower_than_its_target_is_a_miss_even_when_predicted_to_meet_it(tmp_path):
    router = PoolRouter(load_serve_config(REPO / "apps" / "serve.local.yaml"), None)
    metrics, log = RecordedMetrics(), RequestLog(str(tmp_path), flush_rows=1)
    accounting = Accounting(router, metrics, log)
    exchange = Exchange("req-1", time.time(), time.perf_counter() - 0.2)
    exchange.model, exchange.stream = "tandem-tiny", True
    exchange.features = RequestFeatures(prompt_tokens=8, max_tokens=4, requested_ttft_ms=50.0,
                                        tier="interactive")
    states = router.states(ROUTES)
    decision = router.choose(exchange.features, states, time.time(), "req-1")
    assert not decision.predicted_slo_miss and decision.predicted_ttft_ms < 50.0
    cost = router.price(decision, exchange.features, ROUTES["fast"]["price_per_hour"])
    exchange.routed(decision, ROUTES["fast"], states[0], cost)
    router.in_flight["fast"] += 1
    exchange.ttft_s = 0.09  # measured 90 ms against a 50 ms target
    exchange.usage = {"prompt_tokens": 8, "completion_tokens": 4}
    accounting.finish(exchange, 200)
    log.close()

    assert metrics.outcomes == [("tandem-tiny", "fast", "interactive", False)]
    row = read_requests(str(tmp_path)).to_pylist()[0]
    assert (row["slo_met"], row["predicted_slo_miss"]) == (False, False)
    assert row["ttft_target_ms"] == 50.0
    assert row["tpot_target_ms"] == router.routing.targets("interactive").tpot_ms
    assert row["predicted_ttft_ms"] == decision.predicted_ttft_ms
    assert row["predicted_tpot_ms"] == decision.predicted_tpot_ms
    assert router.in_flight["fast"] == 0
    assert row["cost_usd"] == cost == decision.predicted_cost_usd > 0


def test_a_request_has_one_price_whatever_the_policy():
    """The cost (x-tandem-cost-usd, the log's cost_usd) is the rent of the replica time the
    request takes on a full replica, from `tandem.perf`, with or without the tandem policy."""
    config = load_serve_config(REPO / "apps" / "serve.local.yaml")
    features = RequestFeatures(prompt_tokens=40, max_tokens=16, tier="batch")
    prices = {}
    for policy in ("tandem", "round-robin", "least-loaded"):
        router = PoolRouter(config.model_copy(update={"routing_policy": policy}), None)
        decision = router.choose(features, router.states(ROUTES), time.time(), "req")
        prices[policy] = router.price(decision, features, ROUTES["fast"]["price_per_hour"])
    prior = PoolRouter(config, None).priors["fast"]
    expected = request_cost_usd(pool_constants(prior), 0.40, 40, 16)
    assert prices == {"tandem": expected, "round-robin": expected, "least-loaded": expected}

"""The last stage: each answered request booked exactly once.

Metrics (the SLO outcome among them, judged from the measurement), the router's
observation of the pool's latency and the request's spend (200s only), the request-log
row, errors included, and the records the log dropped since the last request
(`ray_tandem_request_log_dropped_total`). The cost is the one the request was priced at
when it was routed (`PoolRouter.price`), so the header, the log and the tier budgets agree.
"""

from __future__ import annotations

import time

from tandem.serve.ingress.exchange import Exchange
from tandem.serve.metrics import ServeMetrics
from tandem.serve.router import PoolRouter
from tandem.telemetry.request_log import RequestLog


class Accounting:
    def __init__(self, router: PoolRouter, metrics: ServeMetrics, requests: RequestLog) -> None:
        self._router = router
        self._metrics = metrics
        self._requests = requests
        self._dropped = 0  # the log's drops already counted in the metric

    def finish(self, exchange: Exchange, status: int) -> None:
        """Book one answered request."""
        if exchange.finished:
            return
        exchange.finished = True
        elapsed = time.perf_counter() - exchange.started
        exchange.status = status
        router = self._router
        if exchange.pool is not None and not exchange.released:
            router.released(exchange.pool, exchange.features, exchange.app)
        if exchange.pool is not None:
            router.settled(exchange.request_id, exchange.pool)
        if exchange.pool is not None and status == 200:
            router.finished(exchange.state, exchange.features, time.time(),
                            exchange.charged_usd(),
                            exchange.output_tokens(), elapsed * 1e3,
                            exchange.ttft_ms() if exchange.stream else None,
                            exchange.tpot_ms(elapsed) if exchange.stream else None,
                            ttft_learned=exchange.ttft_learned)
        labels = {"pool": exchange.pool or "none", "model": exchange.model or "unknown",
                  "model_version": str(exchange.version or "none")}
        ttft_s = exchange.ttft_s if status == 200 and exchange.stream else None
        self._metrics.request_done(labels, str(status), elapsed, ttft_s, exchange.usage,
                                   exchange.charged_usd(), exchange.features.tier)
        record = exchange.record(elapsed)
        if exchange.pool is not None:
            self._metrics.slo_outcome(labels["model"], exchange.pool, exchange.features.tier,
                                      record["slo_met"])
        self._requests.append(record)
        dropped = self._requests.dropped
        if dropped > self._dropped:
            self._metrics.request_log_dropped.inc(dropped - self._dropped)
            self._dropped = dropped

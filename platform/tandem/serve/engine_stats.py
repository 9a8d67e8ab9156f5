"""The vLLM stat-logger plugin that tells the router what a pool's engine holds.

vLLM loads the classes registered under its `vllm.stat_logger_plugins` entry point (see
pyproject.toml) into every AsyncLLM, and with one registered it computes scheduler stats
after every engine step even where stats logging is off. `EngineStatsLogger.record` runs on
the replica's event loop after each step and only updates a
`tandem.serve.engine_load.LoadTracker`: no I/O per step. Its first call inside a Ray Serve
replica starts the `EngineReporter` task that sends the tracker's state to the ingress's
shared view; outside a replica (offline vLLM, `vllm bench`) nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging

from vllm.v1.metrics.loggers import StatLoggerBase

from tandem.serve.engine_load import EngineReporter, LoadTracker

logger = logging.getLogger(__name__)


def _serve_replica() -> tuple[str, str, str] | None:
    """(application, deployment, replica id) of the Serve replica this runs in, else None."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
    except RayServeException:
        return None
    return context.app_name, context.deployment, context.replica_id.unique_id


class EngineStatsLogger(StatLoggerBase):
    """Per engine: each step's running and waiting counts, KV use and token gaps."""

    def __init__(self, vllm_config, engine_index: int = 0) -> None:
        self.engine_index = engine_index
        self.tracker = LoadTracker()
        self._reporter: asyncio.Task | None = None
        self._started = False
        self._failed = False

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None,
               engine_idx: int = 0) -> None:
        if scheduler_stats is None or self._failed:
            return
        try:
            self.tracker.step(scheduler_stats.num_running_reqs,
                              scheduler_stats.num_waiting_reqs, scheduler_stats.kv_cache_usage,
                              iteration_stats.inter_token_latencies_iter
                              if iteration_stats else ())
            if not self._started:
                self._started = True
                self._start_reporting()
        except Exception:  # vLLM stops the engine when a logger raises: report nothing instead
            self._failed = True
            logger.exception("engine load reports stopped")

    def _start_reporting(self) -> None:
        replica = _serve_replica()
        if replica is None:
            return
        from tandem.serve.shared_view import lookup

        reporter = EngineReporter(self.tracker, (*replica, self.engine_index), lookup)
        self._reporter = asyncio.get_running_loop().create_task(reporter.run())

    def log_engine_initialized(self) -> None:
        pass

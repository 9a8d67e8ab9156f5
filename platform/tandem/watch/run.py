"""The retraining loop's clock: every interval the watcher judges the champion's telemetry
(and submits a retraining job when a trigger fires), the rollout takes the next step of a
retrained challenger, rated answers update the quality recorded per tier
(`tandem.rollout.quality`), and new requests and feedback go to MLflow as traces.

One failed evaluation (MLflow or Ray briefly unreachable) is logged and retried at the
next interval, so the loop outlives the services it talks to; with `once` it raises
instead. A tick reads only the telemetry that arrived since the last one
(`tandem.watch.tail`), and starts the compaction of closed hours and the deletion of
those past retention in a Ray task (`tandem.telemetry.compaction`). All its state is
durable (`tandem.watch.build`), so a restarted loop resumes, and reads a failed tick's
new rows again.
The loop joins the Ray cluster so that its metrics (`tandem.watch.metrics`: retraining
job outcomes, rollout stages) go out through Ray's metrics endpoint with serving's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.errors import UserError
from tandem.watch.build import (
    FINETUNE_ENTRYPOINT,
    build_quality_refresh,
    build_rollout,
    build_tail,
    build_trace_export,
    build_watcher,
    trigger_state_path,
)
from tandem.watch.metrics import JobOutcomes, LoopMetrics

if TYPE_CHECKING:
    from tandem.settings import Settings
    from tandem.watch.config import WatchConfig

logger = logging.getLogger(__name__)


def run_watch(config: WatchConfig, settings: Settings, *, once: bool = False) -> int:
    """Tick the loop every `config.interval_s` until stopped; with `once`, tick once and
    return 0. Must run from the project root (the retraining job's entrypoint and the
    fine-tuning config are paths relative to it); `UserError` otherwise."""
    if not Path(FINETUNE_ENTRYPOINT).exists():
        raise UserError(f"run `tandem watch` from the project root ({FINETUNE_ENTRYPOINT} not found)")
    if not Path(config.finetune_config).is_file():
        raise UserError(f"{config.finetune_config}: no such fine-tuning config (finetune_config)")
    from tandem.cluster import join_cluster
    from tandem.ray_jobs import job_status
    from tandem.telemetry.compaction import CompactionTask
    from tandem.triggers.state import TriggerState

    join_cluster(settings)
    metrics = LoopMetrics()
    tail = build_tail(config, settings, time.time())
    watcher = build_watcher(config, settings, tail)
    rollout = build_rollout(config, settings, metrics.observed_tags)
    traces = build_trace_export(config, settings)
    compaction = CompactionTask(settings.home / "telemetry", retention_days=config.retention_days)
    refresh_quality = build_quality_refresh(config, settings)
    state_path = trigger_state_path(config, settings)
    outcomes = JobOutcomes(config.model, lambda: TriggerState(state_path).jobs(),
                           lambda job: job_status(settings, job), metrics.job_ended)
    while True:
        try:
            requests, feedback = tail.advance(time.time())
            results = watcher.tick(time.time())
            outcomes.check()
            rollout.tick(time.time())
            quality = refresh_quality(feedback)
            traces.export(tail.with_rated_requests(requests, feedback), feedback)
            tail.save()
            compaction.tick(time.time())  # a Ray task: the tick does not wait for it
        except Exception:
            if once:
                raise
            logger.exception("watch %s: evaluation failed; next try in %g s",
                             config.model, config.interval_s)
            tail.restore(time.time())  # the new rows are read again next time
        else:
            for result in results:
                verdict = f"FIRED ({result.action})" if result.fired else "quiet"
                print(f"{config.model} {result.name} [{result.window_id}] {verdict}: {result.reason}",
                      flush=True)
            for line in quality:
                print(line, flush=True)
        if once:
            return 0
        time.sleep(config.interval_s)

"""The loop's own metrics, exported through Ray's metrics like the ingress's, so one
Prometheus scrape sees serving and retraining (`deploy/prometheus`):

- `ray_tandem_retrain_jobs_total{model,trigger,status}`: each retraining job counted once,
  when this process first sees it end (SUCCEEDED, FAILED or STOPPED). Jobs that had
  already ended when the loop (re)started were counted by the process before it and are
  not counted again, so a restart does not fire the failed-job alert twice.
- `ray_tandem_rollout_stage{model,version}`: where each version the rollout looks at
  stands, as a number (`STAGES`), whenever its registry tags are read or written.
"""

from __future__ import annotations

from collections.abc import Callable

from tandem.rollout.controller import STAGE

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
STAGES = {"canary": 1, "promoted": 2, "stable": 3, "rejected": -1, "rolled_back": -2}


class LoopMetrics:
    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge

        self.jobs = Counter("tandem_retrain_jobs_total", "Retraining jobs that ended, by "
                            "trigger and final status.", tag_keys=("model", "trigger", "status"))
        self.stage = Gauge("tandem_rollout_stage", "Rollout stage of a model version: "
                           + ", ".join(f"{value} {name}" for name, value in STAGES.items())
                           + ".", tag_keys=("model", "version"))

    def job_ended(self, model: str, trigger: str, status: str) -> None:
        self.jobs.inc(1, {"model": model, "trigger": trigger, "status": status})

    def observed_tags(self, model: str, version: int, tags: dict[str, str]) -> None:
        """A version's registry tags were read or written: export its stage, if it has one."""
        stage = STAGES.get(tags.get(STAGE, ""))
        if stage is not None:
            self.stage.set(stage, {"model": model, "version": str(version)})


class JobOutcomes:
    """Counts the end of every retraining job the trigger state records, once.

    Args:
        model: the watched model (a label of the counter).
        jobs: the jobs the watcher submitted, window id -> job id (its durable state).
        status_of: a job's status as Ray's Jobs API names it, None while unknown.
        ended: called with (model, trigger, status) once per job that ends.
    """

    def __init__(self, model: str, jobs: Callable[[], dict[str, str]],
                 status_of: Callable[[str], str | None],
                 ended: Callable[[str, str, str], None]) -> None:
        self._model, self._jobs, self._status_of, self._ended = model, jobs, status_of, ended
        self._done: set[str] | None = None  # jobs seen ended; None before the first check

    def check(self) -> None:
        first = self._done is None
        done = self._done = self._done if self._done is not None else set()
        for window, job in self._jobs().items():
            if job in done:
                continue
            status = self._status_of(job)
            if status in TERMINAL:
                done.add(job)
                if not first:
                    self._ended(self._model, window.split("@", 1)[0], status)

"""MLflow logging that never stops training.

The driver opens the run; rank 0 logs per-step metrics to it. If MLflow is
unreachable the run carries on (the checkpoint is what matters) and one
warning says so.
"""

from __future__ import annotations

import time
from typing import Any

from tandem.registry import mlflow_client


class RunLogger:
    """Logs metrics and params to one MLflow run, or does nothing when `run_id` is None."""

    def __init__(self, tracking_uri: str | None, run_id: str | None) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._warned = False

    def _call(self, action) -> None:
        if self.run_id is None:
            return
        try:
            action(mlflow_client(self.tracking_uri))
        except Exception as error:
            if not self._warned:
                print(f"warning: MLflow logging failed, training continues: {error}"[:300])
                self._warned = True

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._call(lambda client: client.log_batch(self.run_id, metrics=entries))

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(key, str(value)[:6000]) for key, value in params.items()]
        self._call(lambda client: client.log_batch(self.run_id, params=entries))

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self._call(lambda client: client.log_dict(self.run_id, data, artifact_file))


def start_run(tracking_uri: str | None, experiment: str, run_name: str) -> str | None:
    """Create the MLflow run for a job; None (with a warning) if MLflow is down."""
    try:
        client = mlflow_client(tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        return client.create_run(experiment_id, run_name=run_name).info.run_id
    except Exception as error:
        print(f"warning: MLflow at {tracking_uri} unreachable, training without tracking: "
              f"{str(error)[:200]}")
        return None


def end_run(tracking_uri: str | None, run_id: str | None, status: str = "FINISHED") -> None:
    RunLogger(tracking_uri, run_id)._call(lambda client: client.set_terminated(run_id, status))

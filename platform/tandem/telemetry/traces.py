"""Serving traffic in the MLflow UI: sampled requests as MLflow traces, feedback as assessments.

The ingress never talks to MLflow on the request path (MLflow may be down; a request must
not wait for it), so the watcher exports after the fact, from the request log: every
rated request plus a fixed share of the others (chosen by request id, so the sample does
not depend on when the export runs). Each trace carries the prompt and answer (when the
log kept them), latency, pool and cost, is linked to the MLflow logged model behind the
registered version that answered (the version's page lists it), and gets the users'
scores and corrections as `user_score` feedback assessments.

What was exported is kept in a small JSON state file (request id -> trace id, feedback
ids logged), so a tick exports only what is new, and feedback that arrives after its
request was exported still reaches the trace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from tandem.telemetry.storage import write_state
from tandem.telemetry.window import ratings

EXPERIMENT = "tandem-serving"
MAX_REMEMBERED = 50_000  # exported requests the state file remembers (the newest)


def sampled(request_id: str, share: float) -> bool:
    """Whether a request without feedback is exported: a fixed share by SHA-256 of its id."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


class TraceExport:
    """Exports `model`'s requests and feedback to MLflow; state under `state_path`.

    Args:
        model_id_of: registered version -> MLflow logged-model id (None: no link).
    """

    def __init__(self, tracking_uri: str, model: str, state_path: Path, *, share: float,
                 model_id_of: Callable[[int], str | None]) -> None:
        self.tracking_uri, self.model, self.share = tracking_uri, model, share
        self.state_path = state_path
        self.model_id_of = model_id_of
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.traces: dict[str, str] = state.get("traces", {})  # request id -> trace id
        self.logged_feedback: dict[str, str] = state.get("feedback", {})  # id -> request id

    def export(self, requests: pa.Table, feedback: pa.Table) -> tuple[int, int]:
        """Export new sampled or rated requests and new feedback; returns (traces, assessments)."""
        import mlflow

        caller_uri = mlflow.get_tracking_uri()  # the process's MLflow settings stay the caller's
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            return self._export(mlflow, requests, feedback)
        finally:
            mlflow.set_tracking_uri(caller_uri)

    def _export(self, mlflow, requests: pa.Table, feedback: pa.Table) -> tuple[int, int]:
        from mlflow import MlflowClient
        from mlflow.entities import AssessmentSource

        client = MlflowClient(self.tracking_uri)
        found = client.get_experiment_by_name(EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
        rated = {rating.request_id for rating in ratings(feedback, requests)}
        model_ids: dict[int, str | None] = {}
        traces = 0
        for row in requests.to_pylist():
            request_id = row["request_id"]
            if (row["model"] != self.model or request_id in self.traces
                    or not (request_id in rated or sampled(request_id, self.share))):
                continue
            version = row["model_version"]
            if version is not None and version not in model_ids:
                model_ids[version] = self.model_id_of(version)
            self.traces[request_id] = self._trace(mlflow, row, experiment,
                                                  model_ids.get(version))
            traces += 1
        if traces:  # assessments need their trace stored, and stored here
            mlflow.flush_trace_async_logging()
        source = AssessmentSource(source_type="HUMAN", source_id="POST /v1/feedback")
        assessments = 0
        try:
            for entry in feedback.to_pylist():
                trace_id = self.traces.get(entry["request_id"])
                if trace_id is None or entry["feedback_id"] in self.logged_feedback:
                    continue
                mlflow.log_feedback(trace_id=trace_id, name="user_score", value=entry["score"],
                                    rationale=entry["correction"], source=source,
                                    metadata={"feedback_id": entry["feedback_id"]})
                self.logged_feedback[entry["feedback_id"]] = entry["request_id"]
                assessments += 1
        finally:  # what reached MLflow is remembered even when a call fails midway
            self._save()
        return traces, assessments

    def _trace(self, mlflow, row: dict, experiment: str, model_id: str | None) -> str:
        start_ns = int(row["time"].timestamp() * 1e9)
        tags = {"tandem.request_id": row["request_id"], "tandem.model": row["model"],
                "tandem.model_version": str(row["model_version"]), "tandem.pool": str(row["pool"]),
                "tandem.status": str(row["status"])}
        span = mlflow.start_span_no_context(
            name=f"{row['model']} v{row['model_version']}", span_type="LLM",
            inputs={"prompt": row["prompt"]}, tags=tags, experiment_id=experiment,
            metadata={"mlflow.modelId": model_id} if model_id else None, start_time_ns=start_ns,
            attributes={"pool": str(row["pool"]), "tier": row["tier"], "ttft_ms": row["ttft_ms"],
                        "cost_usd": row["cost_usd"], "routing_reason": row["routing_reason"],
                        "prompt_tokens": row["prompt_tokens"],
                        "completion_tokens": row["completion_tokens"]})
        span.set_outputs({"response": row["response"]})
        span.end(status="OK" if row["status"] < 400 else "ERROR",
                 end_time_ns=start_ns + int(row["e2e_ms"] * 1e6))
        return span.trace_id

    def _save(self) -> None:
        self.traces = dict(list(self.traces.items())[-MAX_REMEMBERED:])
        self.logged_feedback = {feedback_id: request_id for feedback_id, request_id
                                in self.logged_feedback.items() if request_id in self.traces}
        write_state(self.state_path, {"traces": self.traces, "feedback": self.logged_feedback})

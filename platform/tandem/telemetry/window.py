"""Telemetry read back: the rows of a time window, each request's latest rating (with the
tenant that gave it), and the text of a logged prompt.

The triggers, the rollout and the trace export all judge requests by the feedback they
received, so the join lives here, below all three. Feedback is joined to its request by
request id; the request's record says which model and version answered and what the
prompt was, and the copy the feedback store made at post time fills in for requests
outside the table read. Functions of the tables `read_requests` and `read_feedback`
return, with no clock: the caller passes the window's bounds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tandem.telemetry.schema import TIMESTAMP, as_utc


@dataclass(frozen=True)
class Rating:
    """The latest feedback on one request, with what the request's record says about it."""

    request_id: str
    time: float
    score: float
    correction: str | None
    model: str | None
    model_version: int | None
    prompt: str | None
    tenant: str | None = None  # whose key posted it (None: stored before tenants)


def between(table: pa.Table, start: float | None, end: float) -> pa.Table:
    """Rows of `table` with `start < time <= end` (POSIX seconds; no lower bound when
    `start` is None)."""
    mask = pc.less_equal(table["time"], pa.scalar(as_utc(end), TIMESTAMP))
    if start is not None:
        mask = pc.and_(mask, pc.greater(table["time"], pa.scalar(as_utc(start), TIMESTAMP)))
    return table.filter(mask)


def _known(logged: Any, copied: Any) -> Any:
    return copied if logged is None else logged


def ratings(feedback: pa.Table, requests: pa.Table) -> list[Rating]:
    """The latest feedback per request id, oldest first, joined to the request records."""
    wanted = [name for name in ("request_id", "model", "model_version", "prompt")
              if name in requests.column_names]  # a reader may have left out the prompt
    rated = requests.filter(pc.is_in(requests["request_id"],
                                     value_set=feedback["request_id"].combine_chunks()))
    records = {row["request_id"]: row for row in rated.select(wanted).to_pylist()}
    latest: dict[str, dict[str, Any]] = {}
    for row in feedback.sort_by([("time", "ascending"), ("feedback_id", "ascending")]).to_pylist():
        latest.pop(row["request_id"], None)
        latest[row["request_id"]] = row
    out = []
    for request_id, row in latest.items():
        record = records.get(request_id, {})
        out.append(Rating(
            request_id=request_id, time=row["time"].timestamp(), score=row["score"],
            correction=row["correction"],
            model=_known(record.get("model"), row["model"]),
            model_version=_known(record.get("model_version"), row["model_version"]),
            prompt=_known(record.get("prompt"), row.get("prompt")), tenant=row.get("tenant")))
    return out


def rated_records(feedback: pa.Table) -> pa.Table:
    """The records of the requests `feedback` rates as the feedback store copied them when
    each was posted (request-log columns, those `feedback` has), so a rating is judged
    without reading the log; fields of feedback stored before the copy was made are null."""
    copied = {"request_id": "request_id", "time": "request_time", "model": "model",
              "model_version": "model_version", "tier": "tier", "status": "status",
              "prompt": "prompt", "response": "response"}
    return pa.table({name: feedback[column] for name, column in copied.items()
                     if column in feedback.column_names})  # those the reader read


def chat_messages(logged: str) -> list[dict[str, Any]] | None:
    """The messages of a logged chat prompt (the request log keeps them as JSON), or None
    when `logged` is a completion prompt."""
    if not logged.startswith("["):
        return None
    try:
        messages = json.loads(logged)
    except ValueError:
        return None
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return messages
    return None


def prompt_text(logged: str) -> str:
    """The text of a logged prompt: a chat's message contents, one per line, or the
    completion prompt as is."""
    messages = chat_messages(logged)
    return logged if messages is None else "\n".join(m["content"] for m in messages)

"""Feedback on answered requests: the checked body of `POST /v1/feedback`, stored once per feedback id.

Feedback is rare and each post matters (a correction is a training label), so
`FeedbackStore.add` writes one small parquet file per post at once, under
`<root>/feedback/date=YYYY-MM-DD/hour=HH/`, instead of buffering (stores from before
hour partitions also hold files directly under `date=YYYY-MM-DD/`, read alike); the
compactor later merges a closed hour's files (`tandem.telemetry.compaction`). A row
carries what a consumer needs to judge the rating (the request's model, version, tier,
prompt, response, status and time, copied when it is posted), so no one joins the
request log for it.

A client retrying a post with the same `feedback_id` must not count twice: the store
indexes the ids of the last `lookback_s` (7 days) of feedback when it starts and reads
the files other processes added since before storing a new one, so a retry within that
lookback is stored once; and `read_feedback` keeps the first post of an id should two
processes race (or a retry come later). Scores come on a scale the deployment chooses;
`normalized_score` maps them to [-1, 1] so retrain triggers never see the scale.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from tandem.telemetry.schema import FEEDBACK_SCHEMA, as_utc
from tandem.telemetry.storage import (
    IdIndex,
    ends_after,
    partition_directory,
    read_live,
    resolve,
    selected,
    write_file,
)

FeedbackScale = Literal["-1..1", "1..5"]
SCALES: dict[str, tuple[float, float]] = {"-1..1": (-1.0, 1.0), "1..5": (1.0, 5.0)}
MAX_CORRECTION_BYTES = 8 * 1024
MAX_FEEDBACK_ID_CHARS = 128
FIELDS = ("request_id", "score", "correction", "feedback_id")
COPIED = ("model", "model_version", "tier", "prompt", "response", "status")  # from the request


class FeedbackError(ValueError):
    """A feedback post the API refuses: HTTP `status`, a message, and the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass(frozen=True)
class Feedback:
    """One checked feedback post; `score` is on the deployment's scale."""

    request_id: str
    score: float
    correction: str | None = None
    feedback_id: str | None = None


def _bounds(scale: FeedbackScale) -> tuple[float, float]:
    if scale not in SCALES:
        raise ValueError(f"unknown feedback scale {scale!r}; one of {', '.join(SCALES)}")
    return SCALES[scale]


def _utf8_size(text: str) -> int | None:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def parse_feedback(body: Any, scale: FeedbackScale) -> Feedback:
    """The feedback in a decoded JSON body, or `FeedbackError(400, ...)` naming the bad field."""
    if not isinstance(body, Mapping):
        raise FeedbackError(400, f"feedback must be a JSON object, got {type(body).__name__}")
    for name in body:
        if name not in FIELDS:
            raise FeedbackError(400, f"unknown field {name!r}; accepted: {', '.join(FIELDS)}", str(name))
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip() or _utf8_size(request_id) is None:
        raise FeedbackError(400, "request_id is required: the id of the answered request "
                            "(its x-request-id header)", "request_id")
    low, high = _bounds(scale)
    score = body.get("score")
    if "score" not in body:
        raise FeedbackError(400, f"score is required: a number in [{low:g}, {high:g}]", "score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise FeedbackError(400, f"score must be a number in [{low:g}, {high:g}], got "
                            f"{type(score).__name__}", "score")
    if not math.isfinite(score) or not low <= score <= high:
        raise FeedbackError(400, f"score must be in [{low:g}, {high:g}], got {score}", "score")
    correction = body.get("correction")
    if correction is not None:
        size = _utf8_size(correction) if isinstance(correction, str) and correction.strip() else None
        if size is None:
            raise FeedbackError(400, "correction must be a non-empty string (the right answer)",
                                "correction")
        if size > MAX_CORRECTION_BYTES:
            raise FeedbackError(400, f"correction is {size} bytes, over the limit of "
                                f"{MAX_CORRECTION_BYTES}", "correction")
    feedback_id = body.get("feedback_id")
    if feedback_id is not None and (not isinstance(feedback_id, str) or not feedback_id
                                    or len(feedback_id) > MAX_FEEDBACK_ID_CHARS
                                    or _utf8_size(feedback_id) is None):
        raise FeedbackError(400, f"feedback_id must be a string of 1 to {MAX_FEEDBACK_ID_CHARS} "
                            "characters", "feedback_id")
    return Feedback(request_id, float(score), correction, feedback_id)


def normalized_score(score: float, scale: FeedbackScale) -> float:
    """`score` mapped linearly from its scale onto [-1, 1] (on 1..5, 3 is 0)."""
    low, high = _bounds(scale)
    return 2.0 * (score - low) / (high - low) - 1.0


class FeedbackStore:
    """Feedback under `<root>/feedback/`, one parquet file per stored post.

    Args:
        root: local directory or pyarrow filesystem URI of the telemetry store.
        clock: POSIX seconds now; names files and bounds `lookback_s`.
        lookback_s: how far back (by partition) a retried `feedback_id` is recognised.
    """

    def __init__(self, root: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 lookback_s: float = 7 * 86400.0) -> None:
        self._fs, base = resolve(root)
        self._directory = f"{base}/feedback"
        self._clock = clock
        self._lookback = timedelta(seconds=lookback_s)
        self._lock = threading.Lock()
        self._ids = IdIndex(self._fs, self._directory, "feedback_id")
        self._ids.refresh(self._in_lookback)

    def _in_lookback(self, path: str) -> bool:
        return ends_after(path, as_utc(self._clock()) - self._lookback)

    def add(self, feedback: Feedback, request: Mapping[str, Any] | None = None,
            tenant: str | None = None) -> bool:
        """Store `feedback` posted by `tenant`, copying from the request's record (when known)
        what judging it takes: model, version, tier, prompt, response, status and time.
        Returns False, storing nothing, when its `feedback_id` was stored within `lookback_s`.
        Raises `OSError` (or pyarrow's error) when the store cannot be written; nothing is
        then stored, not even in part."""
        with self._lock:
            if feedback.feedback_id is not None:
                if self._ids.file_of(feedback.feedback_id) is not None:
                    return False
                self._ids.refresh(self._in_lookback)
                if self._ids.file_of(feedback.feedback_id) is not None:
                    return False
            feedback_id = feedback.feedback_id or uuid.uuid4().hex
            request = request or {}
            now, answered = self._clock(), request.get("time")
            row = {"feedback_id": feedback_id, "request_id": feedback.request_id,
                   "time": as_utc(now), "score": feedback.score, "correction": feedback.correction,
                   "tenant": tenant, "request_time": None if answered is None else as_utc(answered),
                   **{name: request.get(name) for name in COPIED}}
            table = pa.Table.from_pylist([row], schema=FEEDBACK_SCHEMA)
            directory = partition_directory(self._directory, row["time"])
            self._ids.add(write_file(self._fs, directory, table, now), {feedback_id: None})
            return True


def read_feedback(root: str | os.PathLike[str], since: datetime | None = None,
                  columns: Sequence[str] | None = None) -> pa.Table:
    """Stored feedback, oldest first, one row per feedback id (its first post); with `since`
    (an aware datetime) only `time >= since`, opening only the partitions from `since` on;
    with `columns`, only those (plus `time`). Empty when there is none."""
    fs, base = resolve(root)
    schema = selected(FEEDBACK_SCHEMA, columns, "feedback")
    read = schema.names + ([] if "feedback_id" in schema.names else ["feedback_id"])
    table = read_live(fs, f"{base}/feedback", FEEDBACK_SCHEMA, read,
                      None if since is None else as_utc(since))
    table = table.sort_by([("time", "ascending"), ("feedback_id", "ascending")])
    seen: set[str] = set()
    first = []
    for index, feedback_id in enumerate(table.column("feedback_id").to_pylist()):
        if feedback_id not in seen:
            seen.add(feedback_id)
            first.append(index)
    return table.take(pa.array(first, pa.int64())).select(schema.names).cast(schema)

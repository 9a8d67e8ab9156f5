"""The loop's view of one model's telemetry, advanced each tick by what arrived since the last.

A tick must cost what is new, not what is stored (100 requests/s is 8.6 M request rows a
day), so the loop never reads a store whole. Two `FileCursor`s read the request log's and
the feedback store's new files, and from those rows the tail keeps only what the
trigger policies judge:

- the requests in the trigger window (a few columns; rebuilt on start from the files
  already read, so a restart counts no row twice);
- per model version, the first and the last ratings the quality trigger compares
  (`2 * last_n` and `last_n`), and the requests corrected since the last training run;
- answered requests with logged text per minute, for the distillation trigger (so its
  count is exact to the minute of the last distillation).

A first start (no saved state) reads the feedback store whole (it holds a few percent of
the requests) but not the request log's history: the window is read back, and answers
count from then on, so starting the loop on a store of months costs its window.

`save` writes the cursors and these aggregates in one file, after the tick's consumers
have used the new rows, so a crash between two saves reads those rows again rather than
losing them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tandem.telemetry.cursor import FileCursor
from tandem.telemetry.schema import FEEDBACK_SCHEMA, REQUEST_SCHEMA, as_utc
from tandem.telemetry.storage import resolve, write_state

WINDOW_COLUMNS = ("request_id", "time", "model", "model_version", "status", "prompt",
                  "slo_met", "cost_usd")
KEPT_FEEDBACK = ("feedback_id", "request_id", "time", "score", "correction", "model",
                 "model_version", "tenant")
WINDOW_SCHEMA = pa.schema([REQUEST_SCHEMA.field(name) for name in WINDOW_COLUMNS])
# new feedback as the loop uses it: all but the copied texts (the trace export reads the
# rated requests' own records, the quality refresh the version's ratings)
NEW_FEEDBACK_SCHEMA = pa.schema([field for field in FEEDBACK_SCHEMA
                                 if field.name not in ("prompt", "response")])
KEPT_SCHEMA = pa.schema([FEEDBACK_SCHEMA.field(name) for name in KEPT_FEEDBACK])
# how long before its rating a request is looked for when the rating does not say (stored
# before feedback copied the request's time)
LATE_RATING = timedelta(days=1)
KEPT_VERSIONS = 8  # versions whose first and last ratings are kept (the newest rated)


def _hour_of(relative: str) -> str | None:
    """`YYYY-MM-DDTHH` of a file's partition (`date=.../hour=.../name`); None without one."""
    parts = dict(part.split("=", 1) for part in relative.split("/")[:-1] if "=" in part)
    return f"{parts['date']}T{parts['hour']}" if "date" in parts and "hour" in parts else None


class TelemetryTail:
    """What the trigger policies need of `model`'s telemetry under `root`, kept current.

    Args:
        state_path: where `save` keeps the cursors and aggregates.
        window_s: the trigger window's length; last_n: the ratings the quality trigger judges.
    """

    def __init__(self, root: str | os.PathLike[str], model: str, state_path: Path, *,
                 window_s: float, last_n: int, now: float) -> None:
        self._root = root
        self._fs, self._base = resolve(root)
        self.model, self.state_path = model, state_path
        self.window_s, self.last_n = window_s, last_n
        self.restore(now)

    def restore(self, now: float) -> None:
        """Back to what was last saved (a tick that failed midway is read again)."""
        fs, base = self._fs, self._base
        path = self.state_path
        state = json.loads(path.read_text()) if path.exists() else {}
        self.requests = FileCursor(fs, f"{base}/requests", state.get("requests", ()))
        self.feedback = FileCursor(fs, f"{base}/feedback", state.get("feedback", ()))
        self._ratings: dict[str, dict[str, list[dict[str, Any]]]] = state.get("ratings", {})
        self._corrections: dict[str, float] = state.get("corrections", {})  # request -> time
        self._answers: dict[str, int] = state.get("answers", {})  # minute -> count
        if not state:  # a first start judges from here on, its window read back
            self.requests.skip_to_end()
            self.save()
        start_hour = as_utc(now - self.window_s).strftime("%Y-%m-%dT%H")
        self.window = self._in_window(self.requests.read_again(
            WINDOW_SCHEMA, lambda path: (_hour_of(path) or "") >= start_hour), now)

    def _in_window(self, table: pa.Table, now: float) -> pa.Table:
        since = pa.scalar(as_utc(now - self.window_s), table.schema.field("time").type)
        return table.filter(pc.greater(table["time"], since)).sort_by("time")

    def advance(self, now: float) -> tuple[pa.Table, pa.Table]:
        """Read what is new; returns the new request rows (every column) and feedback rows
        (`NEW_FEEDBACK_SCHEMA`)."""
        requests = self.requests.read_new(REQUEST_SCHEMA)
        feedback = self.feedback.read_new(NEW_FEEDBACK_SCHEMA)
        mine = requests.filter(pc.equal(requests["model"], self.model))
        self.window = self._in_window(pa.concat_tables(
            [self.window, mine.select(list(WINDOW_COLUMNS))]), now)
        answered = mine.filter(pc.and_(pc.equal(mine["status"], 200),
                                       pc.is_valid(mine["response"])))
        for time in answered["time"].to_pylist():
            minute = str(math.floor(time.timestamp() / 60))
            self._answers[minute] = self._answers.get(minute, 0) + 1
        self._keep_ratings(feedback.filter(pc.equal(feedback["model"], self.model)))
        return requests, feedback

    def with_rated_requests(self, requests: pa.Table, feedback: pa.Table) -> pa.Table:
        """`requests` plus the records of the requests `feedback` rates that are not among
        them (rated after they were read), read from the hours since the oldest of them."""
        from tandem.telemetry.request_log import read_requests

        known = set(requests["request_id"].to_pylist())
        rated = feedback.filter(pc.equal(feedback["model"], self.model))
        missing = {row["request_id"]: row for row in rated.to_pylist()
                   if row["request_id"] not in known}
        if not missing:
            return requests
        oldest = min(row.get("request_time") or row["time"] - LATE_RATING
                     for row in missing.values())
        earlier = read_requests(self._root, since=oldest)
        earlier = earlier.filter(pc.is_in(earlier["request_id"], pa.array(list(missing))))
        return pa.concat_tables([requests, earlier])

    def _keep_ratings(self, feedback: pa.Table) -> None:
        rows = feedback.sort_by([("time", "ascending"), ("feedback_id", "ascending")])
        for row in rows.select(list(KEPT_FEEDBACK)).to_pylist():
            row["time"] = row["time"].timestamp()
            kept = self._ratings.setdefault(str(row["model_version"]), {"first": [], "last": []})
            if len(kept["first"]) < 2 * self.last_n:
                kept["first"].append(row)
            kept["last"] = [*kept["last"], row][-self.last_n:]
            if row["correction"] is not None:  # a request's latest rating decides
                self._corrections.pop(row["request_id"], None)
                self._corrections[row["request_id"]] = row["time"]
            else:
                self._corrections.pop(row["request_id"], None)
        newest = sorted(self._ratings, key=lambda version: self._ratings[version]["last"][-1]["time"])
        for version in newest[:-KEPT_VERSIONS]:
            del self._ratings[version]

    def ratings(self) -> pa.Table:
        """The kept feedback rows (`KEPT_SCHEMA`), one per feedback id, oldest first: what
        `tandem.triggers.gather.gather_window` judges in place of the whole store."""
        rows = {row["feedback_id"]: row for kept in self._ratings.values()
                for row in (*kept["first"], *kept["last"])}
        table = pa.Table.from_pylist(
            [{**row, "time": as_utc(row["time"])} for row in rows.values()], schema=KEPT_SCHEMA)
        return table.sort_by([("time", "ascending"), ("feedback_id", "ascending")])

    def corrections_since(self, last_training_time: float | None) -> int:
        """Requests of the model whose latest rating corrected it after `last_training_time`
        (None: all kept); older ones, which a training run since saw, are forgotten."""
        if last_training_time is not None:
            self._corrections = {request_id: time for request_id, time
                                 in self._corrections.items() if time > last_training_time}
        return len(self._corrections)

    def answers_since(self, since: float | None) -> int:
        """Answered requests with logged text after `since` (to its minute; None: all kept);
        older minutes are forgotten."""
        if since is None:
            return sum(self._answers.values())
        first = math.floor(since / 60)
        self._answers = {minute: count for minute, count in self._answers.items()
                         if int(minute) >= first}
        return sum(self._answers.values())

    def save(self) -> None:
        """Persist the cursors and aggregates in one write (see the module docstring)."""
        state: Mapping[str, Any] = {
            "requests": self.requests.state(), "feedback": self.feedback.state(),
            "ratings": self._ratings, "corrections": self._corrections, "answers": self._answers}
        write_state(self.state_path, state)


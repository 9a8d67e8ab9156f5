"""The request log: one record per answered request, as parquet, written off the request path.

`RequestLog.append` only checks a record and puts it in a buffer under a lock; it never
touches I/O and never raises (a bad record is logged and counted in `dropped`). A daemon
thread writes the buffer every `flush_interval_s`, or as soon as `flush_rows` records wait.
A flush writes one new file per (date, hour) partition of the records' times::

    <root>/requests/date=YYYY-MM-DD/hour=HH/part-<time>-<uuid>.parquet

Exactly once: the buffer is swapped out under the lock before writing and one flush runs
at a time, so a record is in one file; a partition whose write fails goes back to the
front of the buffer for the next flush, so nothing is lost while the process lives.

Loss bound on a crash: only what was not yet written (the buffer, and a batch being
written; a half-written file is never visible), that is the records appended in the last
`flush_interval_s` seconds and at most `flush_rows` of them (more only while traffic
outpaces the writing of one batch). Files are not fsynced, so a machine crash may also
lose what the OS had not yet written back.

Bounded: the buffer holds at most `max_buffered_rows` records and about
`max_buffered_bytes` (text fields plus a fixed per-row estimate). While the store keeps
failing, the oldest unwritten records are dropped past that cap and counted in
`dropped` (the ingress exports it as `ray_tandem_request_log_dropped_total`), so a
failing store costs records, never the ingress's memory or its requests.

Lookups (`logged_for_another`, `find`) never list the store: they read the records appended here and
an index of the files on disk within `lookback_s`, which the flush thread refreshes
after every flush (so another process's records are found within about two flush
intervals of being appended there).

A closed hour's files are later compacted into a few (`tandem.telemetry.compaction`);
the index follows the rows into the compacted file at its next refresh, and `find`
refreshes it at once when the file it names is gone. Readers go through `live_files`,
so they see each row once while that happens.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tandem.telemetry.schema import REQUEST_SCHEMA, as_utc, coerce_row
from tandem.telemetry.storage import (
    IdIndex,
    ends_after,
    partition_directory,
    read_live,
    resolve,
    selected,
    write_file,
)

logger = logging.getLogger(__name__)

# A buffered record's memory beside its text: 2.8 KB measured for a dict of its 25 fields
# (CPython 3.11, 75 characters of text).
_ROW_BYTES = 3072


def row_bytes(row: Mapping[str, Any]) -> int:
    """About what one buffered record holds in memory."""
    return _ROW_BYTES + len(row.get("prompt") or "") + len(row.get("response") or "")


class RequestLog:
    """Buffered request records under `<root>/requests/`; see the module docstring.

    Args:
        root: local directory or pyarrow filesystem URI of the telemetry store.
        flush_rows: flush as soon as this many records are buffered.
        flush_interval_s: flush at least this often.
        clock: POSIX seconds now; names files and bounds `lookback_s`.
        recent_ids: how many recently appended request ids (and tenants) it remembers in memory.
        lookback_s: how far back (by partition) lookups look on disk.
        max_buffered_rows, max_buffered_bytes: the buffer's cap (see the module docstring).
    """

    def __init__(self, root: str | os.PathLike[str], *, flush_rows: int = 256,
                 flush_interval_s: float = 2.0, clock: Callable[[], float] = time.time,
                 recent_ids: int = 100_000, lookback_s: float = 7 * 86400.0,
                 max_buffered_rows: int = 20_000,
                 max_buffered_bytes: int = 32 * 1024 * 1024) -> None:
        if min(flush_rows, flush_interval_s, recent_ids, max_buffered_rows,
               max_buffered_bytes) <= 0:
            raise ValueError("flush_rows, flush_interval_s, recent_ids and the buffer caps "
                             "must be positive")
        self._fs, base = resolve(root)
        self._directory = f"{base}/requests"
        self._flush_rows, self._interval, self._clock = flush_rows, flush_interval_s, clock
        self._lookback = timedelta(seconds=lookback_s)
        self._max_rows, self._max_bytes = max_buffered_rows, max_buffered_bytes
        self._lock = threading.Lock()
        self._buffer: deque[dict[str, Any]] = deque()
        self._buffered_bytes = 0
        self._recent: dict[str, str | None] = {}  # request id -> tenant, oldest first
        self._recent_capacity = recent_ids
        self._closed = False
        self.dropped = 0  # records not logged: malformed, appended after close, or past the cap
        self.written = 0
        self._writing: list[dict[str, Any]] = []  # the batch a flush is writing right now
        self._flush_lock = threading.Lock()
        self._index = IdIndex(self._fs, self._directory, "request_id", "tenant")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tandem-request-log", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Records appended but not yet written."""
        with self._lock:
            return len(self._buffer)

    def _drop(self, why: object) -> None:
        with self._lock:
            self.dropped += 1
        logger.warning("request log: dropped a record: %s", why)

    def append(self, record: Mapping[str, Any]) -> None:
        """Buffer one record (fields of `REQUEST_SCHEMA`; `time` as aware datetime or POSIX
        seconds). Never blocks on I/O, never raises."""
        try:
            row = coerce_row(record, REQUEST_SCHEMA)
        except Exception as error:
            self._drop(error)
            return
        request_id = row["request_id"]
        with self._lock:
            if self._closed:
                self.dropped += 1
            else:
                self._buffer.append(row)
                self._buffered_bytes += row_bytes(row)
                shed = self._shed()
                self._recent.pop(request_id, None)
                self._recent[request_id] = row["tenant"]
                if len(self._recent) > self._recent_capacity:
                    del self._recent[next(iter(self._recent))]
            closed, full = self._closed, len(self._buffer) >= self._flush_rows
        if closed:
            logger.warning("request log: dropped %s: the log is closed", request_id)
        elif shed:
            logger.warning("request log: buffer full (the store is failing?): dropped the "
                           "%d oldest unwritten records", shed)
        if full:
            self._wake.set()

    def _shed(self) -> int:
        """Drop the oldest buffered records past the cap (the lock held); how many went."""
        shed = 0
        while len(self._buffer) > 1 and (len(self._buffer) > self._max_rows
                                         or self._buffered_bytes > self._max_bytes):
            self._buffered_bytes -= row_bytes(self._buffer.popleft())
            shed += 1
        self.dropped += shed
        return shed

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        try:
            return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError) as error:
            logger.warning("request log: a batch does not convert (%s); checking row by row", error)
        good = []
        for row in rows:
            try:
                good.append(pa.Table.from_pylist([row], schema=REQUEST_SCHEMA))
            except (pa.ArrowException, ValueError, TypeError) as error:
                self._drop(f"{row['request_id']}: {error}")
        return pa.concat_tables(good) if good else REQUEST_SCHEMA.empty_table()

    def flush(self) -> int:
        """Write everything buffered now, one new file per (date, hour); returns the records
        written. Records of a partition whose write fails go back to the buffer (within its
        cap), and the first such error is raised after every partition was tried."""
        with self._flush_lock:
            with self._lock:  # `find` keeps seeing the batch until it is indexed on disk
                batch, self._buffer = list(self._buffer), deque()
                self._buffered_bytes = 0
                self._writing = batch
            partitions: dict[str, list[dict[str, Any]]] = {}
            for row in batch:
                partitions.setdefault(partition_directory(self._directory, row["time"]),
                                      []).append(row)
            failed: list[dict[str, Any]] = []
            first_error: Exception | None = None
            written = 0
            for directory, rows in partitions.items():
                table = self._table(rows)
                if not table.num_rows:
                    continue
                try:
                    path = write_file(self._fs, directory, table, self._clock())
                except Exception as error:
                    failed.extend(rows)
                    first_error = first_error or error
                    continue
                self._index.add(path, dict(zip(table.column("request_id").to_pylist(),
                                               table.column("tenant").to_pylist(), strict=True)))
                written += table.num_rows
            with self._lock:
                failed.sort(key=lambda row: row["time"])
                self._buffer.extendleft(reversed(failed))
                self._buffered_bytes += sum(row_bytes(row) for row in failed)
                shed = self._shed()
                self._writing = []
                self.written += written
        if shed:
            logger.warning("request log: buffer full while the store fails: dropped the %d "
                           "oldest unwritten records", shed)
        if first_error is not None:
            raise first_error
        return written

    def refresh_index(self) -> None:
        """Index the files on disk within `lookback_s` that this process has not seen."""
        with self._flush_lock:
            self._index.refresh(self._in_lookback)

    def _run(self) -> None:
        self._refresh_quietly()
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:
                logger.exception("request log: flush failed; %d records kept for the next try",
                                 self.buffered)
                self._stop.wait(self._interval)
            self._refresh_quietly()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh_index()
        except Exception:
            logger.exception("request log: cannot index %s", self._directory)

    def close(self) -> None:
        """Stop the flush thread and write what is buffered; later appends are dropped."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def _in_lookback(self, path: str) -> bool:
        return ends_after(path, as_utc(self._clock()) - self._lookback)

    def logged_for_another(self, request_id: str, tenant: str) -> bool:
        """Whether `request_id` was logged for a tenant other than `tenant` (appended here
        recently, or in a file within `lookback_s`; records from before tenants belong to
        no one)."""
        with self._lock:
            owner = self._recent.get(request_id)
        if owner is None:
            found = self._index.lookup(request_id)
            owner = None if found is None else found[1]
        return owner is not None and owner != tenant

    def find(self, request_id: str) -> dict[str, Any] | None:
        """The record of `request_id`, buffered or within `lookback_s` on disk (for feedback)."""
        with self._lock:
            row = next((row for row in chain(reversed(self._buffer), reversed(self._writing))
                        if row["request_id"] == request_id), None)
        if row is not None:
            return dict(row)
        try:
            return self._read_indexed(request_id)
        except FileNotFoundError:  # compacted (or past retention) since it was indexed
            self.refresh_index()
            return self._read_indexed(request_id)

    def _read_indexed(self, request_id: str) -> dict[str, Any] | None:
        path = self._index.file_of(request_id)
        if path is None:
            return None
        rows = pq.read_table(path, filesystem=self._fs, filters=[("request_id", "=", request_id)])
        return rows.to_pylist()[0] if rows.num_rows else None


def read_requests(root: str | os.PathLike[str], since: datetime | None = None,
                  columns: Sequence[str] | None = None) -> pa.Table:
    """Every request record under `<root>/requests/` (with `time >= since` when given, an aware
    datetime; only the hour partitions from `since` on are opened), oldest first; with
    `columns`, only those (plus `time`): a reader pays for what it uses, not for the prompts
    and responses. An empty table of the schema when there are none."""
    fs, base = resolve(root)
    schema = selected(REQUEST_SCHEMA, columns, "request-log")
    table = read_live(fs, f"{base}/requests", REQUEST_SCHEMA, schema.names,
                      None if since is None else as_utc(since))
    return table.sort_by("time").cast(schema)

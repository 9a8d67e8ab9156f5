"""The request log: one record per answered request, as append-only parquet, written off the request path.

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
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tandem.telemetry.schema import REQUEST_SCHEMA, TIMESTAMP, as_utc, coerce_row
from tandem.telemetry.storage import IdIndex, resolve, write_file

logger = logging.getLogger(__name__)

_PARTITION_SCHEMA = pa.schema([("date", pa.string()), ("hour", pa.string())])
PARTITIONING = ds.partitioning(_PARTITION_SCHEMA, flavor="hive")
_DATASET_SCHEMA = pa.unify_schemas([REQUEST_SCHEMA, _PARTITION_SCHEMA])
_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def _partition_start(path: str) -> datetime | None:
    match = _PARTITION.search(path)
    if match is None:
        return None
    return datetime.fromisoformat(f"{match[1]}T{match[2]}:00:00+00:00")


class RequestLog:
    """Buffered, append-only request records under `<root>/requests/`; see the module docstring.

    Args:
        root: local directory or pyarrow filesystem URI of the telemetry store.
        flush_rows: flush as soon as this many records are buffered.
        flush_interval_s: flush at least this often.
        clock: POSIX seconds now; names files and bounds `lookback_s`.
        recent_ids: how many recently appended request ids `knows` remembers in memory.
        lookback_s: how far back (by partition) `knows` and `find` look on disk.
    """

    def __init__(self, root: str | os.PathLike[str], *, flush_rows: int = 256,
                 flush_interval_s: float = 2.0, clock: Callable[[], float] = time.time,
                 recent_ids: int = 100_000, lookback_s: float = 7 * 86400.0) -> None:
        if flush_rows < 1 or flush_interval_s <= 0 or recent_ids < 1:
            raise ValueError("flush_rows, flush_interval_s and recent_ids must be positive")
        self._fs, base = resolve(root)
        self._directory = f"{base}/requests"
        self._flush_rows, self._interval, self._clock = flush_rows, flush_interval_s, clock
        self._lookback = timedelta(seconds=lookback_s)
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._recent: set[str] = set()
        self._recent_order: deque[str] = deque()
        self._recent_capacity = recent_ids
        self._closed = False
        self.dropped = 0
        self.written = 0
        self._writing: list[dict[str, Any]] = []  # the batch a flush is writing right now
        self._flush_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._index = IdIndex(self._fs, self._directory, "request_id")
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
                if request_id not in self._recent:
                    self._recent.add(request_id)
                    self._recent_order.append(request_id)
                    if len(self._recent_order) > self._recent_capacity:
                        self._recent.discard(self._recent_order.popleft())
            closed, full = self._closed, len(self._buffer) >= self._flush_rows
        if closed:
            logger.warning("request log: dropped %s: the log is closed", request_id)
        elif full:
            self._wake.set()

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
        written. Records of a partition whose write fails go back to the buffer, and the first
        such error is raised after every partition was tried."""
        with self._flush_lock:
            with self._lock:  # `find` keeps seeing the batch until it is indexed on disk
                batch, self._buffer = self._buffer, []
                self._writing = batch
            partitions: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for row in batch:
                key = (row["time"].strftime("%Y-%m-%d"), row["time"].strftime("%H"))
                partitions.setdefault(key, []).append(row)
            failed: list[dict[str, Any]] = []
            first_error: Exception | None = None
            written = 0
            for (date, hour), rows in partitions.items():
                table = self._table(rows)
                if not table.num_rows:
                    continue
                try:
                    path = write_file(self._fs, f"{self._directory}/date={date}/hour={hour}",
                                      table, self._clock())
                except Exception as error:
                    failed.extend(rows)
                    first_error = first_error or error
                    continue
                with self._index_lock:
                    self._index.add(path, frozenset(table.column("request_id").to_pylist()))
                written += table.num_rows
            with self._lock:
                self._buffer[:0] = failed
                self._writing = []
                self.written += written
        if first_error is not None:
            raise first_error
        return written

    def _run(self) -> None:
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

    def close(self) -> None:
        """Stop the flush thread and write what is buffered; later appends are dropped."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def _in_lookback(self, path: str) -> bool:
        start = _partition_start(path)
        return start is None or start + timedelta(hours=1) >= as_utc(self._clock()) - self._lookback

    def _file_of(self, request_id: str) -> str | None:
        with self._index_lock:
            path = self._index.file_of(request_id)
            if path is None:
                self._index.refresh(self._in_lookback)
                path = self._index.file_of(request_id)
            return path

    def knows(self, request_id: str) -> bool:
        """Whether `request_id` was appended here recently or is in a file within `lookback_s`."""
        with self._lock:
            if request_id in self._recent:
                return True
        return self._file_of(request_id) is not None

    def find(self, request_id: str) -> dict[str, Any] | None:
        """The record of `request_id`, buffered or within `lookback_s` on disk (for feedback)."""
        with self._lock:
            row = next((row for row in chain(reversed(self._buffer), reversed(self._writing))
                        if row["request_id"] == request_id), None)
        if row is not None:
            return dict(row)
        path = self._file_of(request_id)
        if path is None:
            return None
        rows = pq.read_table(path, filesystem=self._fs, filters=[("request_id", "=", request_id)])
        return rows.to_pylist()[0] if rows.num_rows else None


def read_requests(root: str | os.PathLike[str], since: datetime | None = None) -> pa.Table:
    """Every request record under `<root>/requests/` (with `time >= since` when given, an aware
    datetime), oldest first; an empty table of `REQUEST_SCHEMA` when there are none."""
    fs, base = resolve(root)
    directory = f"{base}/requests"
    if fs.get_file_info(directory).type != pafs.FileType.Directory:
        return REQUEST_SCHEMA.empty_table()
    dataset = ds.dataset(directory, schema=_DATASET_SCHEMA, format="parquet", filesystem=fs,
                         partitioning=PARTITIONING)
    where = None
    if since is not None:
        since = as_utc(since)
        day, hour = since.strftime("%Y-%m-%d"), since.strftime("%H")
        where = (((ds.field("date") > day) | ((ds.field("date") == day) & (ds.field("hour") >= hour)))
                 & (ds.field("time") >= pa.scalar(since, TIMESTAMP)))
    table = dataset.to_table(columns=REQUEST_SCHEMA.names, filter=where)
    return table.sort_by("time").cast(REQUEST_SCHEMA)

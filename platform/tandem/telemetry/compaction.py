"""Compaction and retention of the telemetry stores, run by the loop in a Ray task, never on
the request path.

Writers leave many small files: the request log one per ingress replica per flush, the
feedback store one per post. Once an hour is closed (it ended `closed_after_s` ago, so
the writers' buffers have been written), `compact` merges its files into at most
`max_files` `compact-` files, split by size, as `tandem.telemetry.storage` describes:
each source's row groups copied as they are, the footer naming the sources, the file
written under a dot-name and moved into place. A late file (a writer that could not
write for a while) landing in a compacted hour is merged with the compacted file at a
later run.

The sources are deleted `sources_kept_s` after the first compacted file holding their
rows appeared, not at once: a reader that began listing a partition before then may
open them, and a listing that takes several calls (an object store's pages, a large
directory) must not miss both the compacted file (not there yet) and a source (already
gone). A reader's listing must take less than that; until the sources go, `live_files`
hides them. A compacted file is never copied alone (the copy would name the same
sources, and `live_files` would keep both).

Retention deletes whole partitions whose hour ended more than `retention_days` ago.
One compactor at a time: two at once could merge the same files into two compacted
files and a reader would count their rows twice, so every loop on a cluster calls the
same named actor, which runs one call at a time (`CompactionTask`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tandem.telemetry.schema import FEEDBACK_SCHEMA, REQUEST_SCHEMA, as_utc
from tandem.telemetry.storage import (
    COMPACTED_PREFIX,
    SOURCES_KEY,
    compacted_sources,
    file_name,
    live_files,
    parquet_files,
    partition_span,
    publish,
    resolve,
    retry_stale,
)

logger = logging.getLogger(__name__)

STORES = {"requests": REQUEST_SCHEMA, "feedback": FEEDBACK_SCHEMA}
_STAMP = slice(len(COMPACTED_PREFIX), len(COMPACTED_PREFIX) + len("YYYYmmddTHHMMSSffffffZ"))


@dataclass(frozen=True)
class CompactionSummary:
    """What one `compact` run did, over both stores."""

    files_compacted: int = 0  # source files merged into compacted ones
    files_written: int = 0  # compacted files written
    files_deleted: int = 0  # sources deleted once their compacted file had been in place long enough
    partitions_deleted: int = 0  # partitions past retention
    partitions_failed: int = 0  # partitions left as they were after an error (logged)


def compact(root: str | os.PathLike[str], *, now: float, closed_after_s: float = 900.0,
            retention_days: float = 30.0, max_files: int = 4,
            target_file_bytes: int = 256 * 1024 * 1024,
            sources_kept_s: float = 60.0) -> CompactionSummary:
    """Compact the closed hours of both stores under `root` and apply retention.

    Args:
        root: local directory or pyarrow filesystem URI of the telemetry store.
        now: POSIX seconds now.
        closed_after_s: an hour is compacted once it ended this long ago.
        retention_days: partitions whose hour ended longer ago than this are deleted.
        max_files: at most this many compacted files per partition.
        target_file_bytes: a partition's files are split into compacted files of about
            this size (up to `max_files`).
        sources_kept_s: how long a compacted file's sources stay beside it (longer than a
            reader's listing takes; 0 deletes them at once).
    """
    if max_files < 1 or target_file_bytes < 1:
        raise ValueError("max_files and target_file_bytes must be positive")
    fs, base = resolve(root)
    moment = as_utc(now)
    expiry = moment - timedelta(days=retention_days)
    settled = moment - timedelta(seconds=max(sources_kept_s, 0.0))
    counts = dict.fromkeys(("files_compacted", "files_written", "files_deleted",
                            "partitions_deleted", "partitions_failed"), 0)
    for store, schema in STORES.items():
        directory = f"{base}/{store}"
        counts["partitions_deleted"] += retry_stale(lambda: _expire(fs, directory, expiry))
        # `listed` after `live`: a late file may be new there
        live, listed = retry_stale(lambda: (live_files(fs, directory), parquet_files(fs, directory)))
        for folder in sorted({path.rsplit("/", 1)[0] for path in live}):
            span = partition_span(folder)
            if span is None or span[1] + timedelta(seconds=closed_after_s) > moment:
                continue
            try:
                held = [path for path in live if path.rsplit("/", 1)[0] == folder]
                expired = _expired(fs, held, listed, settled)
                done = _compact_partition(fs, folder, schema, held, expired, now, max_files,
                                          target_file_bytes, sources_kept_s)
            except (OSError, pa.ArrowException, ValueError):
                logger.exception("compaction: %s left as it was", folder)
                counts["partitions_failed"] += 1
                continue
            for key, value in done.items():
                counts[key] += value
    return CompactionSummary(**counts)


def _names(fs: pafs.FileSystem, path: str) -> set[str]:
    """The writers' file names whose rows a file holds."""
    return ({name for name, _ in compacted_sources(fs, path)} if _is_compacted(path)
            else {path.rsplit("/", 1)[-1]})


def _expired(fs: pafs.FileSystem, live: list[str], listed: list[str], cutoff: datetime) -> list[str]:
    """The files of `listed` beside `live` (one partition's) to delete: those whose rows a
    live compacted file holds and another compacted file written by `cutoff` held. A reader
    whose listing began after `cutoff` sees that file, or the one that replaced it; a late
    file, named by no compacted file, is never one of them."""
    folder = live[0].rsplit("/", 1)[0]
    names = {path: _names(fs, path) for path in listed if path.rsplit("/", 1)[0] == folder}
    held = set().union(*(_names(fs, path) for path in live if _is_compacted(path)))
    settled = [(path, held_then) for path, held_then in names.items()
               if _is_compacted(path) and _written_at(path) <= cutoff]
    return [path for path, rows in names.items() if path not in live and rows <= held
            and any(other != path and rows <= held_then for other, held_then in settled)]


def _written_at(path: str) -> datetime:
    stamp = path.rsplit("/", 1)[-1][_STAMP]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def _is_compacted(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def _compact_partition(fs: pafs.FileSystem, folder: str, schema: pa.Schema, live: list[str],
                       expired: list[str], now: float, max_files: int,
                       target_file_bytes: int, sources_kept_s: float) -> dict[str, int]:
    """Delete the `expired` sources, then merge the partition's live files when it needs
    it; the counts of what it did."""
    done = {"files_deleted": 0, "files_compacted": 0, "files_written": 0}
    for path in expired:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            continue
        done["files_deleted"] += 1
    writers = [path for path in live if not _is_compacted(path)]
    if len(live) <= 1 or (not writers and len(live) <= max_files):
        return done
    infos = fs.get_file_info(live)
    total = sum(info.size for info in infos)
    outputs = min(max_files, max(1, math.ceil(total / target_file_bytes)))
    groups: list[list[str]] = [[]]
    filled = 0
    for info in infos:
        if groups[-1] and filled >= total * len(groups) / outputs:
            groups.append([])
        groups[-1].append(info.path)
        filled += info.size
    # a compacted file alone stays: a copy would hold the same names, and readers both
    groups = [sources for sources in groups if len(sources) > 1 or not _is_compacted(sources[0])]
    for sources in groups:
        _write_compacted(fs, folder, schema, sources, now)
        if sources_kept_s <= 0:
            for path in sources:
                fs.delete_file(path)
            done["files_deleted"] += len(sources)
        done["files_compacted"] += len(sources)
        done["files_written"] += 1
    return done


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in `schema`'s columns: a column an older file lacks is nulls."""
    unknown = set(table.column_names) - set(schema.names)
    if unknown:
        raise ValueError(f"column(s) not in the store's schema: {', '.join(sorted(unknown))}")
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pa.nulls(table.num_rows, field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _write_compacted(fs: pafs.FileSystem, folder: str, schema: pa.Schema,
                     sources: Sequence[str], now: float) -> str:
    """One compacted file of `sources`' rows, each source's row groups as they were."""
    files = [pq.ParquetFile(path, filesystem=fs) for path in sources]
    try:
        entries: list[list[Any]] = []
        for path, source in zip(sources, files, strict=True):
            groups = source.metadata.num_row_groups
            carried = (compacted_sources(fs, path) if _is_compacted(path)
                       else ((path.rsplit("/", 1)[-1], groups),))
            if sum(count for _, count in carried) != groups:
                raise ValueError(f"{path}: its footer's sources do not add up to its row groups")
            entries.extend([name, count] for name, count in carried)
        footer = schema.with_metadata({SOURCES_KEY: json.dumps(entries).encode()})

        def write(temporary: str) -> None:
            with pq.ParquetWriter(temporary, footer, filesystem=fs) as writer:
                for source in files:
                    for index in range(source.metadata.num_row_groups):
                        rows = _conform(source.read_row_group(index), schema)
                        writer.write_table(rows, row_group_size=max(1, rows.num_rows))
            expected = sum(groups for _, groups in entries)
            if pq.read_metadata(temporary, filesystem=fs).num_row_groups != expected:
                raise ValueError(f"compacted file of {folder} does not keep its sources' "
                                 f"{expected} row groups")

        return publish(fs, folder, file_name(COMPACTED_PREFIX, now), write)
    finally:
        for source in files:
            source.close()


def _expire(fs: pafs.FileSystem, directory: str, cutoff: datetime) -> int:
    """Delete the partitions under `directory` that ended at or before `cutoff`; how many."""
    deleted = 0
    for day in _folders(fs, directory):
        span = partition_span(day)
        if span is None:
            continue
        parts = [day] if span[1] <= cutoff else [
            hour for hour in _folders(fs, day)
            if (hour_span := partition_span(hour)) is not None and hour_span[1] <= cutoff]
        for part in parts:
            try:
                fs.delete_dir(part)
            except FileNotFoundError:
                continue
            except OSError as error:  # a late writer's file landing meanwhile; next run
                logger.warning("retention: cannot delete %s: %s", part, error)
                continue
            deleted += 1
    return deleted


def _folders(fs: pafs.FileSystem, directory: str) -> list[str]:
    selector = pafs.FileSelector(directory, allow_not_found=True)
    return sorted(info.path for info in fs.get_file_info(selector)
                  if info.type == pafs.FileType.Directory)


COMPACTOR_NAME = "tandem-compactor"


class _Compactor:
    """Actor body: one per cluster (named), so the calls of every loop (one per watched
    model, all on the same stores) run one after the other."""

    def compact(self, root: str, now: float, options: dict[str, Any]) -> CompactionSummary:
        return compact(root, now=now, **options)


class CompactionTask:
    """`compact` on the cluster's one compactor actor (Ray must be initialised), started
    from the loop's ticks, one call in flight per loop; every loop shares the actor, so
    two loops never compact at once.

    Args:
        root: the telemetry store, as the Ray workers see it.
        options: `compact`'s keyword arguments but `now`.
    """

    def __init__(self, root: str | os.PathLike[str], **options: Any) -> None:
        self._root, self._options = os.fspath(root), options
        self._running: Any = None  # the ObjectRef of the call in flight

    def tick(self, now: float) -> CompactionSummary | None:
        """Start a compaction unless one still runs; the summary of the one that finished
        since the last tick, if any (a failed one is logged, and the next tick starts anew)."""
        import ray

        summary = None
        if self._running is not None:
            finished, _ = ray.wait([self._running], timeout=0)
            if not finished:
                return None
            summary = self.wait()
        compactor = ray.remote(_Compactor).options(
            name=COMPACTOR_NAME, namespace="tandem", get_if_exists=True, num_cpus=0,
            max_concurrency=1).remote()
        self._running = compactor.compact.remote(self._root, now, self._options)
        return summary

    def wait(self) -> CompactionSummary | None:
        """The summary of the call in flight once it ends (None when none runs or it failed)."""
        import ray

        running, self._running = self._running, None
        if running is None:
            return None
        try:
            return ray.get(running)
        except Exception:
            logger.exception("compaction of %s failed", self._root)
            return None

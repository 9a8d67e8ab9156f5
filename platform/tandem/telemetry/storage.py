"""Where telemetry files live and how one gets there: any pyarrow filesystem, whole files only.

Readers (`read_requests`, the loop's cursors, DuckDB, Spark) list a directory and read
what they find, so a file must appear complete or not at all. It is written under a
dot-name, which dataset discovery skips, then moved to its final name: a rename on a
local disk; on an object store the upload of the temporary object is already atomic.

A file's content never changes once it is visible, but a closed hour's small files are
compacted (`tandem.telemetry.compaction`): their rows are copied into a `compact-` file,
one run of row groups per file a writer wrote, whose footer names those files
(`SOURCES_KEY`; compacting a compacted file again carries its names over, so a name is
always one a writer gave), and the sources are deleted only after that file is in place.
A reader that lists a compacted file beside some of its sources reads their rows once
(`live_files` drops the sources, and an older compacted file whose names a newer one
holds), and a cursor that read some sources before the compaction reads only the
others' row groups (`tandem.telemetry.cursor`). So no reader sees a row twice or misses
one, whatever it lists while the compactor runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)
T = TypeVar("T")


def resolve(root: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of `root`: a local path or a URI (`file://`, `s3://`, ...)."""
    text = os.fspath(root)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), os.path.abspath(text)


def file_name(prefix: str, now: float) -> str:
    """A new file's name: `prefix`, the UTC time `now` (so names sort by it), a random part."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}{stamp}-{uuid.uuid4().hex}.parquet"


def publish(fs: pafs.FileSystem, directory: str, name: str, write: Callable[[str], None]) -> str:
    """Have `write(path)` write a file under a dot-name in `directory`, then move it to `name`
    there, so it appears whole or not at all; returns its path."""
    path, temporary = f"{directory}/{name}", f"{directory}/.{name}.tmp"
    fs.create_dir(directory, recursive=True)
    try:
        write(temporary)
        fs.move(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(temporary)
        raise
    return path


def write_file(fs: pafs.FileSystem, directory: str, table: pa.Table, now: float) -> str:
    """Write `table` as one new parquet file in `directory`; returns its path."""
    return publish(fs, directory, file_name("part-", now),
                   lambda path: pq.write_table(table, path, filesystem=fs))


def write_state(path: Path, state: Any) -> None:
    """Replace the JSON state file `path` with `state` in one step: a reader (or a process
    that restarts) sees the old state or the new, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def parquet_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    """Paths of the finished parquet files under `directory`, at any depth; none if it is missing."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    return sorted(info.path for info in fs.get_file_info(selector)
                  if info.type == pafs.FileType.File and info.path.endswith(".parquet")
                  and not info.base_name.startswith((".", "_")))


COMPACTED_PREFIX = "compact-"
SOURCES_KEY = b"tandem.sources"
_sources_cache: dict[str, tuple[tuple[str, int], ...]] = {}  # compacted files never change


def compacted_sources(fs: pafs.FileSystem, path: str) -> tuple[tuple[str, int], ...]:
    """(source file name, row groups it became) of a compacted file, in row-group order;
    empty for a file a writer wrote. Reads the footer once per path."""
    if not path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX):
        return ()
    if path not in _sources_cache:
        metadata = pq.read_metadata(path, filesystem=fs).metadata or {}
        _sources_cache[path] = tuple((name, int(groups)) for name, groups
                                     in json.loads(metadata.get(SOURCES_KEY, b"[]")))
    return _sources_cache[path]


def live_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    """`parquet_files` less those whose rows a compacted file listed beside them holds (the
    compactor deletes them next): each row is in exactly one of the paths returned."""
    files = parquet_files(fs, directory)
    present = set(files)
    for path in [path for path in _sources_cache  # forget what is gone from this directory
                 if path.startswith(f"{directory}/") and path not in present]:
        del _sources_cache[path]
    compacted: dict[str, dict[str, set[str]]] = {}  # folder -> compacted file -> names
    for path in files:
        held = {name for name, _ in compacted_sources(fs, path)}
        if held:
            folder = path.rsplit("/", 1)[0]
            compacted.setdefault(folder, {})[path] = held
    superseded = set()
    for folder, held_by in compacted.items():
        for path, held in held_by.items():
            superseded |= {f"{folder}/{name}" for name in held}
            superseded |= {other for other, also in held_by.items() if also < held}
    return [path for path in files if path not in superseded]


_LISTING_TRIES = 5
PARTITIONING = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.string())]),
                               flavor="hive")
_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})(?:/hour=(\d{2}))?$")


def partition_directory(store: str, when: datetime) -> str:
    """The hour partition of `store` (a store's directory) that a row of time `when` goes to."""
    return f"{store}/date={when:%Y-%m-%d}/hour={when:%H}"


def partition_span(directory: str) -> tuple[datetime, datetime] | None:
    """Start and end of the hour (of the day, for a date-only partition) a partition directory
    holds; None for a directory that is no partition."""
    match = _PARTITION.search(directory)
    if match is None:
        return None
    start = datetime.fromisoformat(f"{match[1]}T{match[2] or '00'}:00:00+00:00")
    return start, start + (timedelta(hours=1) if match[2] else timedelta(days=1))


def ends_after(path: str, moment: datetime) -> bool:
    """Whether the partition of the file at `path` ends after `moment` (a file outside any
    partition counts as ending after any moment)."""
    span = partition_span(path.rsplit("/", 1)[0])
    return span is None or span[1] > moment


def retry_stale(read: Callable[[], T]) -> T:
    """`read()`, again while a file or folder it listed is gone when opened (the compactor
    deleted it, or retention its partition; a folder created while listed reads the same):
    the listing was stale, a new one is not."""
    for _ in range(_LISTING_TRIES - 1):
        with contextlib.suppress(FileNotFoundError):
            return read()
    return read()


def selected(schema: pa.Schema, columns: Sequence[str] | None, store: str) -> pa.Schema:
    """`schema` narrowed to `columns` plus `time` (all of it for None), in its order;
    `ValueError` naming a column it lacks."""
    if columns is None:
        return schema
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise ValueError(f"no such {store} column(s): {', '.join(sorted(unknown))}")
    return pa.schema([field for field in schema if field.name in columns or field.name == "time"])


def read_live(fs: pafs.FileSystem, directory: str, schema: pa.Schema, columns: list[str],
              since: datetime | None = None) -> pa.Table:
    """`columns` of the rows in the live files under `directory` (a hive-partitioned store of
    `schema`), with `time >= since` when given (an aware datetime; only the partitions
    ending after it are opened); a file without a column reads it as nulls. Each row once,
    whatever the compactor does meanwhile."""
    dataset_schema = pa.unify_schemas([schema, PARTITIONING.schema])
    where = None if since is None else ds.field("time") >= pa.scalar(since, schema.field("time").type)

    def read() -> pa.Table:
        paths = [path for path in live_files(fs, directory)
                 if since is None or ends_after(path, since)]
        if not paths:
            return pa.schema([schema.field(name) for name in columns]).empty_table()
        dataset = ds.dataset(paths, schema=dataset_schema, format="parquet", filesystem=fs,
                             partitioning=PARTITIONING, partition_base_dir=directory)
        return dataset.to_table(columns=columns, filter=where)

    return retry_stale(read)


class IdIndex:
    """The ids in one column of the live parquet files under a directory (and, with
    `value_column`, each id's value there), read once per file. A lookup is one dict read.

    Compaction moves ids from file to file: a refresh reads the compacted file before it
    forgets its sources, so an id stays known throughout, and a lookup may still name a
    source the compactor has deleted since; the caller refreshes and looks again.

    One thread changes it (`add`, `refresh`); others may look up at any time: a lookup
    reads one dict entry, which CPython keeps consistent under concurrent writes.
    """

    def __init__(self, fs: pafs.FileSystem, directory: str, column: str,
                 value_column: str | None = None) -> None:
        self._fs, self._directory = fs, directory
        self._column, self._value_column = column, value_column
        self._files: dict[str, tuple[str, ...]] = {}  # path -> the ids it holds
        self._where: dict[str, tuple[str, str | None]] = {}  # id -> (path, value)

    def add(self, path: str, values: Mapping[str, str | None]) -> None:
        """Record the ids (-> values) of a file this process just wrote (saves reading it back)."""
        self._files[path] = tuple(values)
        for value_id, value in values.items():
            self._where[value_id] = (path, value)

    def refresh(self, keep: Callable[[str], bool] | None = None) -> None:
        """List the live files again, read new ones, then forget the others (deleted, compacted,
        or no longer accepted by `keep`). A file gone before it is read is skipped (its rows
        are in the file that replaced it); an unreadable one is logged and retried next time."""
        wanted = {path for path in retry_stale(lambda: live_files(self._fs, self._directory))
                  if keep is None or keep(path)}
        columns = [self._column] + ([self._value_column] if self._value_column else [])
        for path in sorted(wanted - self._files.keys()):
            try:
                table = pq.read_table(path, columns=columns, filesystem=self._fs)
            except FileNotFoundError:
                continue
            except (OSError, pa.ArrowException) as error:
                logger.warning("telemetry: cannot read %s: %s", path, error)
                continue
            ids = table.column(self._column).to_pylist()
            values = (table.column(self._value_column).to_pylist() if self._value_column
                      else [None] * len(ids))
            self.add(path, dict(zip(ids, values, strict=True)))
        for path in self._files.keys() - wanted:
            for value_id in self._files.pop(path):
                if self._where.get(value_id, ("",))[0] == path:
                    del self._where[value_id]

    def file_of(self, value_id: str) -> str | None:
        """The file holding `value_id`, among the indexed ones."""
        found = self._where.get(value_id)
        return None if found is None else found[0]

    def lookup(self, value_id: str) -> tuple[str, str | None] | None:
        """(file, value) of `value_id`, among the indexed ones."""
        return self._where.get(value_id)

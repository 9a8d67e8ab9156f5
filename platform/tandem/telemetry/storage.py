"""Where telemetry files live and how one gets there: any pyarrow filesystem, whole files only.

Readers (`read_requests`, the retrain watcher, DuckDB, Spark) list a directory and read
what they find, so a file must appear complete or not at all. It is written under a
dot-name, which dataset discovery skips, then moved to its final name: a rename on a
local disk; on an object store the upload of the temporary object is already atomic.
Files are never rewritten or appended to, which is what lets `IdIndex` read each one once.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)


def resolve(root: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of `root`: a local path or a URI (`file://`, `s3://`, ...)."""
    text = os.fspath(root)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), os.path.abspath(text)


def write_file(fs: pafs.FileSystem, directory: str, table: pa.Table, now: float) -> str:
    """Write `table` as one new parquet file in `directory`; returns its path."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"part-{stamp}-{uuid.uuid4().hex}.parquet"
    path, temporary = f"{directory}/{name}", f"{directory}/.{name}.tmp"
    fs.create_dir(directory, recursive=True)
    pq.write_table(table, temporary, filesystem=fs)
    try:
        fs.move(temporary, path)
    except BaseException:
        fs.delete_file(temporary)
        raise
    return path


def parquet_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    """Paths of the finished parquet files under `directory`, at any depth; none if it is missing."""
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    return sorted(info.path for info in fs.get_file_info(selector)
                  if info.type == pafs.FileType.File and info.path.endswith(".parquet")
                  and not info.base_name.startswith((".", "_")))


class IdIndex:
    """The ids in one column of the parquet files under a directory (and, with
    `value_column`, each id's value there), read once per file. A lookup is one dict read.

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
        """List the directory again, forget vanished files and read new ones; with `keep`, only
        the paths it accepts. An unreadable file is logged and retried next time."""
        wanted = {path for path in parquet_files(self._fs, self._directory)
                  if keep is None or keep(path)}
        for path in self._files.keys() - wanted:
            for value_id in self._files.pop(path):
                if self._where.get(value_id, ("",))[0] == path:
                    del self._where[value_id]
        columns = [self._column] + ([self._value_column] if self._value_column else [])
        for path in sorted(wanted - self._files.keys()):
            try:
                table = pq.read_table(path, columns=columns, filesystem=self._fs)
            except (OSError, pa.ArrowException) as error:
                logger.warning("telemetry: cannot read %s: %s", path, error)
                continue
            ids = table.column(self._column).to_pylist()
            values = (table.column(self._value_column).to_pylist() if self._value_column
                      else [None] * len(ids))
            self.add(path, dict(zip(ids, values, strict=True)))

    def file_of(self, value_id: str) -> str | None:
        """The file holding `value_id`, among the indexed ones."""
        found = self._where.get(value_id)
        return None if found is None else found[0]

    def lookup(self, value_id: str) -> tuple[str, str | None] | None:
        """(file, value) of `value_id`, among the indexed ones."""
        return self._where.get(value_id)

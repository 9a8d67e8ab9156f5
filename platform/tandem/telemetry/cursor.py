"""What a consumer of a telemetry store has read, by file: each row read once, late rows too.

Rows land in the partition of their request's time seconds to minutes after it (after a
store outage, much later), so a watermark on time would lose late rows. A `FileCursor`
remembers instead which files it has read; a tick lists the store, reads the files it
has not seen, and the consumer saves `state()` with whatever it derived from those rows,
in one write, so a restart neither reads a row again nor loses one.

Compaction (`tandem.telemetry.storage`) replaces a closed hour's files by a `compact-`
file whose footer names the files its rows came from: a compacted file whose sources
were all read is marked read unopened, and one whose sources were read in part is read
only in the row groups of the others. Reading a compacted file marks its sources read
too, so compacting it again (with a late file) costs the cursor the late rows only. Names
neither listed nor held by a listed compacted file (compacted away, or past retention)
are forgotten, so the state holds about as many names as the store holds files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tandem.telemetry.storage import compacted_sources, live_files


class FileCursor:
    """The files of `directory` a consumer has read (paths relative to it)."""

    def __init__(self, fs: pafs.FileSystem, directory: str, read: Iterable[str] = ()) -> None:
        self._fs, self._directory = fs, directory
        self._read = set(read)

    def state(self) -> list[str]:
        """What to persist beside the consumer's own state (JSON-ready)."""
        return sorted(self._read)

    def _relative(self, path: str) -> str:
        return path.removeprefix(f"{self._directory}/")

    def read_new(self, schema: pa.Schema) -> pa.Table:
        """The rows (columns of `schema`) of the files not read before, which count as read
        from now on; an empty table when nothing is new."""
        files = live_files(self._fs, self._directory)
        tables, held = [], set()
        for path in files:
            name, sources = self._relative(path), self._sources(path)
            held |= sources
            if name not in self._read:
                tables.extend(self._rows(path, sources, schema, already_read=False))
                self._read |= {name, *sources}
        self._read &= {self._relative(path) for path in files} | held
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def skip_to_end(self) -> None:
        """Count every file in the store now as read (a consumer that starts from here)."""
        for path in live_files(self._fs, self._directory):
            self._read |= {self._relative(path), *self._sources(path)}

    def read_again(self, schema: pa.Schema, keep: Callable[[str], bool]) -> pa.Table:
        """The rows already read from the files whose relative path `keep` accepts (to
        rebuild a window after a restart without counting the new files twice)."""
        tables = []
        for path in live_files(self._fs, self._directory):
            if keep(self._relative(path)):
                tables.extend(self._rows(path, self._sources(path), schema, already_read=True))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def _sources(self, path: str) -> set[str]:
        """The relative paths of the files a compacted file holds the rows of."""
        folder = self._relative(path).rpartition("/")[0]
        return {f"{folder}/{name}".lstrip("/") for name, _ in compacted_sources(self._fs, path)}

    def _rows(self, path: str, sources: set[str], schema: pa.Schema,
              already_read: bool) -> list[pa.Table]:
        """`path`'s rows that this cursor has (`already_read`) or has not read."""
        if not sources:
            if (self._relative(path) in self._read) != already_read:
                return []
            groups = None
        else:
            folder = self._relative(path).rpartition("/")[0]
            groups, first = [], 0
            for name, count in compacted_sources(self._fs, path):
                if (f"{folder}/{name}".lstrip("/") in self._read) == already_read:
                    groups.extend(range(first, first + count))
                first += count
            if not groups:
                return []
        file = pq.ParquetFile(path, filesystem=self._fs)
        present = [name for name in schema.names if name in file.schema_arrow.names]
        table = (file.read(columns=present) if groups is None
                 else file.read_row_groups(groups, columns=present))
        for name in schema.names:  # a column added to the schema after the file was written
            if name not in present:
                field = schema.field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return [table.select(schema.names).cast(schema)]

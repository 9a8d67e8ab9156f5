"""A telemetry store as a Ray Dataset, for analysis that outgrows one process.

A distillation window can hold millions of requests with their prompts and answers. Rather
than copy the window into the driver and filter it there, each live file becomes one Ray
read task that returns only the rows the analysis keeps, in the columns it names; the
tasks stream over the cluster and only the kept rows reach the driver. A file written
before a column existed reads it as nulls, as `read_requests` does.

The file list is taken once, when the dataset is made: the compactor deletes a compacted
hour's sources only `sources_kept_s` (a minute) after the compacted file appeared, which
is how long the reading may take before a task finds its file gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem.telemetry.schema import FEEDBACK_SCHEMA, REQUEST_SCHEMA, as_utc
from tandem.telemetry.storage import ends_after, live_files, resolve, selected

if TYPE_CHECKING:
    import ray.data

STORES = {"requests": REQUEST_SCHEMA, "feedback": FEEDBACK_SCHEMA}
Keep = Callable[[pa.Table], pa.Array]  # a table -> the boolean mask of its rows to keep


def read_file(root: str, path: str, schema: pa.Schema, since: datetime | None,
              keep: Keep | None) -> pa.Table:
    """The rows of one file in `schema`'s columns, with `time >= since`, that `keep` accepts."""
    fs, _ = resolve(root)
    file = pq.ParquetFile(path, filesystem=fs)
    present = [name for name in schema.names if name in file.schema_arrow.names]
    table = file.read(columns=present)
    for name in schema.names:
        if name not in present:
            table = table.append_column(schema.field(name),
                                        pa.nulls(table.num_rows, schema.field(name).type))
    table = table.select(schema.names).cast(schema)
    if since is not None:
        table = table.filter(pc.greater_equal(table["time"],
                                              pa.scalar(since, schema.field("time").type)))
    return table.filter(keep(table)) if keep is not None else table


def store_dataset(root: str | os.PathLike[str], store: str, *, since: datetime | None = None,
                  columns: Sequence[str] | None = None, keep: Keep | None = None,
                  ) -> ray.data.Dataset:
    """The rows of `store` ("requests" or "feedback") under `root` with `time >= since` (only
    the partitions ending after it are read) that `keep` accepts, in `columns` (plus `time`),
    one read task per file. `keep` runs in the tasks: it must be picklable. The process
    must have joined its cluster: Ray Data would otherwise start a cluster of its own (and,
    with token auth on, write a new token over the cluster's)."""
    import ray
    import ray.data

    if not ray.is_initialized():
        raise RuntimeError("store_dataset needs this process to have joined a Ray cluster")

    schema = selected(STORES[store], columns, store)
    since = None if since is None else as_utc(since)
    fs, base = resolve(root)
    paths = [path for path in live_files(fs, f"{base}/{store}")
             if since is None or ends_after(path, since)]
    location = os.fspath(root)

    def read(batch: dict) -> pa.Table:
        tables = [read_file(location, path, schema, since, keep) for path in batch["path"]]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    if not paths:
        return ray.data.from_arrow(schema.empty_table())
    return ray.data.from_items([{"path": path} for path in paths]).map_batches(
        read, batch_size=1, batch_format="numpy")


def read_kept(root: str | os.PathLike[str], store: str, *, since: datetime | None = None,
              columns: Sequence[str] | None = None, keep: Keep | None = None) -> pa.Table:
    """What `store_dataset` keeps, in one table on the driver, oldest first."""
    schema = selected(STORES[store], columns, store)
    dataset = store_dataset(root, store, since=since, columns=columns, keep=keep)
    tables = [batch.cast(schema) for batch in
              dataset.iter_batches(batch_format="pyarrow", batch_size=None)]
    return (pa.concat_tables(tables) if tables else schema.empty_table()).sort_by("time")

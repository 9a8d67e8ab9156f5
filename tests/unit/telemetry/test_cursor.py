"""A file cursor reads each row once: across ticks, restarts, late files and compactions."""

import json
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tandem.telemetry.cursor import FileCursor
from tandem.telemetry.storage import COMPACTED_PREFIX, SOURCES_KEY, live_files, write_file

SCHEMA = pa.schema([("request_id", pa.string()), ("n", pa.int64())])
FS = pafs.LocalFileSystem()


def write(directory, hour, *ids):
    table = pa.Table.from_pylist([{"request_id": i, "n": 1} for i in ids], schema=SCHEMA)
    return write_file(FS, f"{directory}/date=2026-12-07/hour={hour}", table, 1.8e9)


def compact(*paths):
    """What the compactor writes (the storage contract): one run of row groups per source,
    names flattened to the files writers wrote; the sources are not deleted here."""
    folder = paths[0].rsplit("/", 1)[0]
    sources = []
    target = f"{folder}/{COMPACTED_PREFIX}{uuid.uuid4().hex}.parquet"
    with pq.ParquetWriter(target, SCHEMA) as writer:
        for path in paths:
            file = pq.ParquetFile(path)
            inner = json.loads((file.metadata.metadata or {}).get(SOURCES_KEY, b"[]"))
            sources.extend(inner or [[path.rsplit("/", 1)[1], file.num_row_groups]])
            for group in range(file.num_row_groups):
                writer.write_table(file.read_row_group(group))
        writer.add_key_value_metadata({SOURCES_KEY: json.dumps(sources).encode()})
    return target


def read_ids(cursor):
    return sorted(cursor.read_new(SCHEMA)["request_id"].to_pylist())


def test_each_row_is_read_once_across_ticks_and_a_restart(tmp_path):
    root = str(tmp_path)
    write(root, "10", "a", "b")
    cursor = FileCursor(FS, root)
    assert read_ids(cursor) == ["a", "b"]
    assert read_ids(cursor) == []
    write(root, "11", "c")
    write(root, "09", "late")  # a late file in an earlier hour is new all the same
    restarted = FileCursor(FS, root, json.loads(json.dumps(cursor.state())))
    assert read_ids(restarted) == ["c", "late"]
    assert read_ids(restarted) == []


def test_a_compacted_hour_is_not_read_again_and_its_sources_are_forgotten(tmp_path):
    root = str(tmp_path)
    first, second = write(root, "10", "a"), write(root, "10", "b")
    cursor = FileCursor(FS, root)
    assert read_ids(cursor) == ["a", "b"]
    compact(first, second)
    assert read_ids(cursor) == []  # compacted file and sources listed together
    FS.delete_file(first)
    FS.delete_file(second)
    assert read_ids(cursor) == []
    assert len(cursor.state()) == 3  # the compacted file and the names it holds


def test_sources_read_in_part_give_only_the_others_rows(tmp_path):
    root = str(tmp_path)
    first = write(root, "10", "a")
    cursor = FileCursor(FS, root)
    assert read_ids(cursor) == ["a"]
    second = write(root, "10", "b", "c")
    compact(first, second)
    FS.delete_file(first)
    FS.delete_file(second)
    assert read_ids(cursor) == ["b", "c"]
    assert read_ids(cursor) == []


def test_compacting_a_compacted_file_with_a_late_one_costs_the_late_rows_only(tmp_path):
    root = str(tmp_path)
    first, second = write(root, "10", "a"), write(root, "10", "b")
    earlier = compact(first, second)
    for path in (first, second):
        FS.delete_file(path)
    old_cursor, fresh_cursor = FileCursor(FS, root), FileCursor(FS, root)
    assert read_ids(old_cursor) == ["a", "b"]
    late = write(root, "10", "late")
    later = compact(earlier, late)
    # a reader listing between the compaction and the deletes sees each row once
    assert sorted(path.rsplit("/", 1)[1] for path in live_files(FS, root)) == [
        later.rsplit("/", 1)[1]]
    for path in (earlier, late):
        FS.delete_file(path)
    assert read_ids(old_cursor) == ["late"]
    assert read_ids(fresh_cursor) == ["a", "b", "late"]


def test_read_again_returns_what_was_read_and_not_what_is_new(tmp_path):
    root = str(tmp_path)
    first = write(root, "10", "a")
    cursor = FileCursor(FS, root)
    read_ids(cursor)
    second = write(root, "10", "b")
    compact(first, second)
    FS.delete_file(first)
    FS.delete_file(second)
    write(root, "11", "c")
    assert cursor.read_again(SCHEMA, lambda path: True)["request_id"].to_pylist() == ["a"]
    assert cursor.read_again(SCHEMA, lambda path: "hour=11" in path).num_rows == 0
    assert read_ids(cursor) == ["b", "c"]


def test_a_column_missing_from_an_old_file_reads_as_null(tmp_path):
    root = str(tmp_path)
    write(root, "10", "a")
    wider = pa.schema([*SCHEMA, ("tenant", pa.string())])
    rows = FileCursor(FS, root).read_new(wider).to_pylist()
    assert rows == [{"request_id": "a", "n": 1, "tenant": None}]

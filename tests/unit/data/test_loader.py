"""Example-file validation: every bad file fails fast with its name and the row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tandem.data.loader import read_examples, validate_examples_file
from tandem.errors import UserError

GOOD = {"prompt": "translate: red =>", "completion": " mipu"}


def _jsonl(path: Path, *lines: str | bytes) -> Path:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


def _row(**fields: object) -> str:
    return json.dumps({**GOOD, **fields})


def _parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def test_valid_jsonl_counts_rows_and_skips_blank_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "ok.jsonl", _row(), "", _row(extra=1))
    assert validate_examples_file(path) == 2


def test_valid_parquet_counts_rows(tmp_path: Path) -> None:
    table = pa.table({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"], "id": [1, 2, 3]})
    assert validate_examples_file(_parquet(tmp_path / "ok.parquet", table)) == 3


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ((_row(), "{not json"), "line 2: invalid JSON"),
        ((_row(), _row(), "[1, 2]"), "line 3: expected a JSON object, got list"),
        (("42",), "line 1: expected a JSON object, got int"),
        ((json.dumps({"completion": "x"}),), "line 1: missing key 'prompt'"),
        ((_row(), json.dumps({"prompt": "x"})), "line 2: missing key 'completion'"),
        ((_row(prompt=3),), "line 1: 'prompt' must be a string, got int"),
        ((_row(completion=None),), "line 1: 'completion' must be a string, got NoneType"),
        ((_row(), _row(completion=["a"])), "line 2: 'completion' must be a string, got list"),
        ((_row(prompt=""),), "line 1: 'prompt' is empty"),
        ((_row(), _row(), _row(completion="  ")), "line 3: 'completion' is empty"),
        ((_row(), b'{"prompt": "caf\xe9", "completion": "x"}'), "line 2: not valid UTF-8"),
    ],
)
def test_bad_jsonl_rows_name_file_and_line(
    tmp_path: Path, lines: tuple[str | bytes, ...], needle: str
) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(UserError) as info:
        validate_examples_file(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("columns", "needle"),
    [
        ({"completion": ["x"]}, "missing column 'prompt'"),
        ({"prompt": ["x"], "answer": ["y"]}, "missing column 'completion'"),
        ({"prompt": [1, 2], "completion": ["x", "y"]}, "column 'prompt' has type int64"),
        ({"prompt": ["a", None], "completion": ["x", "y"]}, "row 2: 'prompt' is null"),
        ({"prompt": ["a", "b", "c"], "completion": ["x", "y", " "]}, "row 3: 'completion' is empty"),
    ],
)
def test_bad_parquet_names_file_and_row(
    tmp_path: Path, columns: dict[str, list[object]], needle: str
) -> None:
    path = _parquet(tmp_path / "bad.parquet", pa.table(columns))
    with pytest.raises(UserError) as info:
        validate_examples_file(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)


def test_parquet_with_invalid_utf8_names_row(tmp_path: Path) -> None:
    raw = pa.array([b"ok", b"caf\xe9"], type=pa.binary())
    broken = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    table = pa.Table.from_arrays([broken, pa.array(["x", "y"])], names=["prompt", "completion"])
    path = _parquet(tmp_path / "bad.parquet", table)
    with pytest.raises(UserError, match=r"bad\.parquet: row 2: 'prompt' is not valid UTF-8"):
        validate_examples_file(path)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.jsonl", None, "no such file"),
        ("empty.jsonl", b"", "file is empty"),
        ("blank.jsonl", b"\n\n", "file has no rows"),
        ("empty.parquet", b"", "file is empty"),
        ("junk.parquet", b"not parquet at all", "not a readable Parquet file"),
        ("data.csv", b"prompt,completion\n", "unsupported file type '.csv'"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, name: str, content: bytes | None, needle: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as info:
        validate_examples_file(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_parquet_without_rows(tmp_path: Path) -> None:
    schema = pa.schema([("prompt", pa.string()), ("completion", pa.string())])
    path = _parquet(tmp_path / "none.parquet", schema.empty_table())
    with pytest.raises(UserError, match="file has no rows"):
        validate_examples_file(path)


def test_read_examples_rejects_bad_file_before_ray(tmp_path: Path) -> None:
    good = _jsonl(tmp_path / "good.jsonl", _row())
    bad = _jsonl(tmp_path / "bad.jsonl", _row(prompt=1))
    with pytest.raises(UserError, match="bad.jsonl: line 1"):
        read_examples([good, bad])
    with pytest.raises(UserError, match="no example files"):
        read_examples([])


@pytest.mark.integration
def test_read_examples_reads_jsonl_and_parquet_together(tmp_path: Path) -> None:
    import ray

    jsonl = _jsonl(tmp_path / "a.jsonl", _row(), "", _row(prompt="p2", extra={"k": 1}))
    table = pa.table({"prompt": ["p3"], "completion": ["c3"], "score": [0.5]})
    parquet = _parquet(tmp_path / "b.parquet", table)
    ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        rows = read_examples([jsonl, str(parquet)]).take_all()
    finally:
        ray.shutdown()
    assert sorted(r["prompt"] for r in rows) == ["p2", "p3", GOOD["prompt"]]
    assert all(set(r) == {"prompt", "completion"} for r in rows)

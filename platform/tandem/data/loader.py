"""Read prompt/completion example files into Ray Data, failing fast on bad rows.

Ray Data's parse errors arrive from a worker as a stack of Arrow internals that
rarely name the file, let alone the row. So every file gets a streaming pass in
plain Python (JSONL) or pyarrow (Parquet) first, and a bad one raises
`UserError` naming the file and the line (JSONL) or 1-based row (Parquet).
Only validated files reach `ray.data`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tandem.errors import UserError

if TYPE_CHECKING:
    import ray.data

COLUMNS = ("prompt", "completion")
SUFFIXES = (".jsonl", ".parquet")


def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise UserError("no example files given")
    return out


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in COLUMNS:
        if key not in row:
            raise UserError(f"{where}: missing key {key!r}")
        value = row[key]
        if not isinstance(value, str):
            raise UserError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise UserError(f"{where}: {key!r} is empty")


def _validate_jsonl(path: Path) -> int:
    rows = 0
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}: line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: not valid UTF-8 (byte {exc.start})") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            _check_row(row, where)
            rows += 1
    return rows


def _first_true(mask: pa.Array) -> int | None:
    hits = pc.indices_nonzero(mask.fill_null(False))
    return hits[0].as_py() if len(hits) else None


def _check_string_column(path: Path, name: str, column: pa.Array, offset: int) -> None:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        for index, value in enumerate(column.cast(pa.binary()).to_pylist()):
            try:
                (value or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(
                    f"{path}: row {offset + index + 1}: {name!r} is not valid UTF-8"
                ) from None
        raise
    if (index := _first_true(column.is_null())) is not None:
        raise UserError(f"{path}: row {offset + index + 1}: {name!r} is null")
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
    if (index := _first_true(blank)) is not None:
        raise UserError(f"{path}: row {offset + index + 1}: {name!r} is empty")


def _validate_parquet(path: Path) -> int:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = parquet.schema_arrow
    for name in COLUMNS:
        if name not in schema.names:
            raise UserError(f"{path}: missing column {name!r} (columns: {schema.names})")
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise UserError(f"{path}: column {name!r} has type {kind}, expected string")
    offset = 0
    for batch in parquet.iter_batches(columns=list(COLUMNS)):
        for name in COLUMNS:
            _check_string_column(path, name, batch.column(name), offset)
        offset += batch.num_rows
    return offset


def validate_examples_file(path: str | Path) -> int:
    """Check one `.jsonl` or `.parquet` example file and return its row count.

    Raises:
        UserError: the file is missing, empty, of an unknown type, or has a
            row that is not an object with non-empty string `prompt` and
            `completion`; the message names the file and the line or row.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: unsupported file type {path.suffix!r}; use one of {SUFFIXES}")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    rows = _validate_jsonl(path) if path.suffix == ".jsonl" else _validate_parquet(path)
    if rows == 0:
        raise UserError(f"{path}: file has no rows")
    return rows


def read_examples(paths: str | Path | Sequence[str | Path]) -> ray.data.Dataset:
    """Validate example files, then read them as one Ray Dataset of `prompt`, `completion`.

    Call it where Ray is initialised (a driver or a job); other columns are dropped.
    """
    import ray.data
    from pyarrow import json as pa_json

    files = [p.resolve() for p in _as_paths(paths)]
    for path in files:
        validate_examples_file(path)
    jsonl = [str(p) for p in files if p.suffix == ".jsonl"]
    parquet = [str(p) for p in files if p.suffix == ".parquet"]
    parts: list[ray.data.Dataset] = []
    if jsonl:
        schema = pa.schema([(name, pa.string()) for name in COLUMNS])
        parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        parts.append(ray.data.read_json(jsonl, parse_options=parse, file_extensions=["jsonl"]))
    if parquet:
        parts.append(ray.data.read_parquet(parquet))
    dataset = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    return dataset.select_columns(list(COLUMNS))

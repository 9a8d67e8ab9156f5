"""The fixed columns of request and feedback records, and the cheap check that a record fits them.

Records are written by the ingress and read by the retrain watcher, the planner and
whatever an operator points at the parquet files (DuckDB, Spark), so the schema is
fixed here, once. `coerce_row` runs on the request path: plain `isinstance` and
range checks per field, so that a batch built from checked rows never fails to
convert to Arrow at flush time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

REQUEST_SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("time", TIMESTAMP, nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("model_version", pa.int64()),
    pa.field("pool", pa.string()),
    pa.field("tier", pa.string(), nullable=False),
    pa.field("stream", pa.bool_(), nullable=False),
    pa.field("prompt_tokens", pa.int32(), nullable=False),
    pa.field("completion_tokens", pa.int32(), nullable=False),
    pa.field("ttft_ms", pa.float64()),
    pa.field("tpot_ms", pa.float64()),
    pa.field("e2e_ms", pa.float64(), nullable=False),
    pa.field("status", pa.int16(), nullable=False),
    pa.field("cost_usd", pa.float64(), nullable=False),
    pa.field("routing_reason", pa.string(), nullable=False),
    pa.field("ttft_target_ms", pa.float64()),  # the targets it was routed against; None: not routed
    pa.field("tpot_target_ms", pa.float64()),
    pa.field("predicted_ttft_ms", pa.float64()),  # the router's prediction at decision time
    pa.field("predicted_tpot_ms", pa.float64()),
    pa.field("predicted_slo_miss", pa.bool_()),  # routed to a pool predicted to miss its targets
    pa.field("slo_met", pa.bool_()),  # measured: `tandem.routing.outcome`; None: no target or not 200
    pa.field("prompt", pa.string()),
    pa.field("response", pa.string()),
    pa.field("tenant", pa.string()),  # whose key sent it (`tandem.auth`); None: logged before tenants
])

FEEDBACK_SCHEMA = pa.schema([
    pa.field("feedback_id", pa.string(), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("time", TIMESTAMP, nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("correction", pa.string()),
    pa.field("model", pa.string()),
    pa.field("model_version", pa.int64()),
    pa.field("prompt", pa.string()),
    pa.field("tenant", pa.string()),  # whose key posted it; None: stored before tenants
    # the rated request as logged, so a rating is judged without the request log; None:
    # stored before these were copied, or the request was not found
    pa.field("tier", pa.string()),
    pa.field("response", pa.string()),
    pa.field("status", pa.int16()),
    pa.field("request_time", TIMESTAMP),
])


def as_utc(value: datetime | float) -> datetime:
    """An aware UTC datetime from one, or from POSIX seconds; a naive datetime is refused."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime (give a timezone, e.g. UTC)")
        return value.astimezone(UTC)
    return datetime.fromtimestamp(value, UTC)


def _coerce(field: pa.Field, value: Any) -> Any:
    kind = field.type
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_string(kind) and isinstance(value, str):
        return value
    if pa.types.is_boolean(kind) and isinstance(value, bool):
        return value
    if pa.types.is_integer(kind) and number and isinstance(value, int):
        limit = 1 << (kind.bit_width - 1)
        if not -limit <= value < limit:
            raise ValueError(f"{field.name}: {value} does not fit {kind}")
        return value
    if pa.types.is_floating(kind) and number:
        return float(value)
    if pa.types.is_timestamp(kind) and (number or isinstance(value, datetime)):
        try:
            return as_utc(value)
        except (ValueError, OverflowError, OSError) as error:
            raise ValueError(f"{field.name}: {error}") from None
    raise ValueError(f"{field.name}: expected {kind}, got {type(value).__name__}")


def coerce_row(record: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """`record` checked against `schema`: every non-nullable field present, no unknown field,
    each value of its column's type (ints for floats and POSIX seconds for timestamps are
    converted). Raises `ValueError` naming the field."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a mapping, got {type(record).__name__}")
    unknown = record.keys() - set(schema.names)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    row = {}
    for field in schema:
        value = record.get(field.name)
        if value is None:
            if not field.nullable:
                raise ValueError(f"{field.name}: required")
            row[field.name] = None
        else:
            row[field.name] = _coerce(field, value)
    return row

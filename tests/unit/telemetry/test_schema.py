from datetime import UTC, datetime

import pytest
from tandem.telemetry.schema import FEEDBACK_SCHEMA, REQUEST_SCHEMA, coerce_row

from .helpers import T0, request


def test_valid_record_is_coerced():
    row = coerce_row(request("r1", prompt_tokens=7, e2e_ms=40), REQUEST_SCHEMA)
    assert row["time"] == datetime.fromtimestamp(T0, UTC)
    assert row["e2e_ms"] == 40.0 and isinstance(row["e2e_ms"], float)
    assert list(row) == REQUEST_SCHEMA.names


def test_nullable_fields_may_be_missing():
    record = request("r1")
    for name in ("model_version", "pool", "ttft_ms", "tpot_ms", "prompt", "response"):
        del record[name]
    row = coerce_row(record, REQUEST_SCHEMA)
    assert row["model_version"] is None and row["prompt"] is None


@pytest.mark.parametrize(("change", "message"), [
    ({"model": None}, "model: required"),
    ({"stream": 1}, "stream: expected bool"),
    ({"prompt_tokens": True}, "prompt_tokens: expected int32"),
    ({"prompt_tokens": 1.5}, "prompt_tokens: expected int32"),
    ({"status": 70000}, "status: 70000 does not fit int16"),
    ({"e2e_ms": "fast"}, "e2e_ms: expected double"),
    ({"time": datetime(2025, 1, 1)}, "time: naive datetime"),
    ({"time": float("nan")}, "time:"),
    ({"colour": "red"}, "unknown field(s): colour"),
])
def test_bad_values_name_the_field(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        coerce_row(request("r1", **change), REQUEST_SCHEMA)


def test_not_a_mapping():
    with pytest.raises(ValueError, match="expected a mapping, got list"):
        coerce_row([], REQUEST_SCHEMA)


def test_feedback_schema_shares_the_request_columns_it_copies():
    for name in ("request_id", "time", "model", "model_version", "tier", "prompt", "response",
                 "status"):
        assert FEEDBACK_SCHEMA.field(name).type == REQUEST_SCHEMA.field(name).type
    assert FEEDBACK_SCHEMA.field("request_time").type == REQUEST_SCHEMA.field("time").type
    copied = ("tier", "response", "status", "request_time")
    assert all(FEEDBACK_SCHEMA.field(name).nullable for name in copied)  # old files lack them

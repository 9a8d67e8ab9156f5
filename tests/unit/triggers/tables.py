"""Small request-log and feedback tables, built by hand, for the watcher's tests."""

import pyarrow as pa
from tandem.telemetry.schema import FEEDBACK_SCHEMA, REQUEST_SCHEMA, as_utc

NOW = 1_740_000_000.0


def request(request_id: str, ago: float, **fields) -> dict:
    """A request record answered `ago` seconds before NOW."""
    record = {"request_id": request_id, "time": as_utc(NOW - ago), "model": "tandem-tiny",
              "model_version": 3, "pool": "fast", "tier": "standard", "stream": False,
              "prompt_tokens": 12, "completion_tokens": 5, "ttft_ms": 20.0, "tpot_ms": 4.0,
              "e2e_ms": 41.5, "status": 200, "cost_usd": 1e-6,
              "routing_reason": "cheapest meeting TTFT<=500ms TPOT<=50ms", "predicted_slo_miss": False,
              "ttft_target_ms": 500.0, "tpot_target_ms": 50.0, "predicted_ttft_ms": 18.0,
              "predicted_tpot_ms": 4.0, "slo_met": True,
              "prompt": f"translate: {request_id} =>", "response": " fipo"}
    record.update(fields)
    return record


def feedback(request_id: str, ago: float, score: float, correction: str | None = None,
             **fields) -> dict:
    """A feedback row posted `ago` seconds before NOW, with no copy of the request's fields."""
    row = {"feedback_id": f"fb-{request_id}-{ago:g}", "request_id": request_id,
           "time": as_utc(NOW - ago), "score": score, "correction": correction,
           "model": None, "model_version": None, "prompt": None}
    row.update(fields)
    return row


def requests_table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=REQUEST_SCHEMA)


def feedback_table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=FEEDBACK_SCHEMA)

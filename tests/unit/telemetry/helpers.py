"""Records and waiting shared by the telemetry tests."""

import time
from datetime import UTC, datetime

T0 = datetime(2025, 3, 1, 10, 30, tzinfo=UTC).timestamp()


def request(request_id: str, when: float = T0, **fields) -> dict:
    """A complete, valid request record."""
    record = {"request_id": request_id, "time": when, "model": "tandem-tiny", "model_version": 3,
              "pool": "fast", "tier": "standard", "stream": False, "prompt_tokens": 12,
              "completion_tokens": 5, "ttft_ms": 20.0, "tpot_ms": 4.0, "e2e_ms": 41.5,
              "status": 200, "cost_usd": 1e-6, "routing_reason": "cheapest meeting SLO",
              "prompt": "translate: red cat =>", "response": " fipo zemu"}
    record.update(fields)
    return record


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

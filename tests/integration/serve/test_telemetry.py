"""The request log and feedback through real HTTP: every answered request is recorded
exactly once (errors and streams included), feedback is stored once per feedback id."""

from __future__ import annotations

import uuid

import pytest
from tandem.telemetry.feedback import read_feedback

from .conftest import logged_rows

pytestmark = pytest.mark.integration

MODEL = "tandem-serve"


def _post(served, http, body, **headers):
    return http.post(f"{served.api_url}/v1/completions", json=body, headers=headers, timeout=60)


def test_every_request_is_logged_exactly_once_with_its_status(served, http):
    # ignore_eos: the served model samples (temperature 1), and an end-of-sequence token
    # drawn early made a 2-token answer in one CI run
    sent: dict[str, int] = {}
    for index in range(3):
        reply = _post(served, http, {"model": MODEL, "prompt": f"translate: red cat {index} =>",
                                     "max_tokens": 4, "ignore_eos": True})
        sent[reply.headers["x-request-id"]] = reply.status_code
        with http.post(f"{served.api_url}/v1/completions", stream=True, timeout=60, json={
                "model": MODEL, "prompt": "translate: blue dog =>", "max_tokens": 4,
                "ignore_eos": True, "stream": True}) as streamed:
            assert b"data: [DONE]" in b"".join(streamed.iter_content(None))
            sent[streamed.headers["x-request-id"]] = streamed.status_code
    for body in ({"model": MODEL, "prompt": "x", "max_tokens": 4, "colour": "red"},
                 {"model": "no-such-model", "prompt": "x"}):
        reply = _post(served, http, body)
        sent[reply.headers["x-request-id"]] = reply.status_code
    assert sorted(sent.values()) == [200] * 6 + [400, 404]

    rows = logged_rows(served, set(sent))
    assert sorted(row["request_id"] for row in rows) == sorted(sent)  # each exactly once
    for row in rows:
        assert row["status"] == sent[row["request_id"]]
        if row["status"] == 200:
            assert row["model"] == MODEL and row["pool"] in ("fast", "cheap")
            assert row["completion_tokens"] == 4 and row["prompt"] and row["response"] is not None
            assert row["routing_reason"] and row["cost_usd"] > 0
            assert (row["ttft_ms"] is not None) == row["stream"]
            assert row["ttft_target_ms"] > 0 and row["tpot_target_ms"] > 0  # the tier's
            assert row["predicted_ttft_ms"] > 0 and row["slo_met"] is not None
        else:
            assert row["slo_met"] is None
    assert {row["model"] for row in rows if row["status"] == 404} == {"no-such-model"}


def test_feedback_is_stored_once_per_feedback_id_and_needs_a_known_request(served, http):
    reply = _post(served, http, {"model": MODEL, "prompt": "translate: green bird =>", "max_tokens": 4})
    request_id = reply.json()["id"]
    assert request_id == reply.headers["x-request-id"]
    feedback_id = uuid.uuid4().hex
    body = {"request_id": request_id, "score": -1, "correction": "verde pajaro",
            "feedback_id": feedback_id}
    first = http.post(f"{served.api_url}/v1/feedback", json=body, timeout=30)
    again = http.post(f"{served.api_url}/v1/feedback", json=body, timeout=30)
    assert (first.status_code, again.status_code) == (201, 200)

    unknown = http.post(f"{served.api_url}/v1/feedback", timeout=30,
                            json={"request_id": "never-issued", "score": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
    for bad, param in (({"request_id": request_id, "score": 3}, "score"),
                       ({"request_id": request_id, "score": "good"}, "score"),
                       ({"score": 1}, "request_id")):
        reply = http.post(f"{served.api_url}/v1/feedback", json=bad, timeout=30)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param

    stored = [row for row in read_feedback(served.home / "telemetry").to_pylist()
              if row["feedback_id"] == feedback_id]
    assert len(stored) == 1
    assert stored[0]["correction"] == "verde pajaro" and stored[0]["model"] == MODEL
    assert stored[0]["prompt"] == "translate: green bird =>"

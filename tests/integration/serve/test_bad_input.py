"""Bad input gets its 4xx and an OpenAI error body; the next good request still succeeds."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

GOOD = {"model": "tandem-serve", "prompt": "translate: red cat =>", "max_tokens": 4}
LONG_PROMPT = " ".join(["red cat blue dog"] * 100)

CASES = [
    # (id, path, raw body or json, headers, status, param)
    ("malformed-json", "completions", b"{bad", {}, 400, None),
    ("not-an-object", "completions", [1, 2], {}, 400, None),
    ("missing-prompt", "completions", {"model": "tandem-serve"}, {}, 400, "prompt"),
    ("missing-messages", "chat/completions", {"model": "tandem-serve"}, {}, 400, "messages"),
    ("unknown-model", "completions", {**GOOD, "model": "nope"}, {}, 404, "model"),
    ("max-tokens-zero", "completions", {**GOOD, "max_tokens": 0}, {}, 400, "max_tokens"),
    ("max-tokens-negative", "chat/completions",
     {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, {}, 400, "max_tokens"),
    ("max-tokens-beyond-context", "completions", {**GOOD, "max_tokens": 100000}, {}, 400,
     "max_tokens"),
    ("prompt-beyond-context", "completions", {**GOOD, "prompt": LONG_PROMPT}, {}, 400, None),
    ("wrong-type", "completions", {**GOOD, "temperature": "hot"}, {}, 400, "temperature"),
    ("wrong-type-max-tokens", "completions", {**GOOD, "max_tokens": "4"}, {}, 400, "max_tokens"),
    ("messages-not-list", "chat/completions", {"messages": "hi"}, {}, 400, "messages"),
    ("unknown-field", "completions", {**GOOD, "frobnicate": 1}, {}, 400, "frobnicate"),
    ("stream-options-without-stream", "completions", {**GOOD, "stream_options": 1}, {}, 400,
     "stream_options"),
    ("bad-hint", "completions", GOOD, {"x-tandem-ttft-ms": "fast"}, 400, "x-tandem-ttft-ms"),
    ("bad-tier", "completions", GOOD, {"x-tandem-tier": "gold"}, 400, "x-tandem-tier"),
    ("too-large", "completions", {**GOOD, "prompt": "a" * (1024 * 1024 + 10)}, {}, 413, None),
]
TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large"}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gets_4xx_and_openai_error(served, case, http):
    _, path, body, headers, status, param = case
    url = f"{served.api_url}/v1/{path}"
    if isinstance(body, bytes):
        reply = http.post(url, data=body, headers=headers, timeout=30)
    else:
        reply = http.post(url, json=body, headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == TYPES[status]
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    good = http.post(f"{served.api_url}/v1/completions", json=GOOD, timeout=30)
    assert good.status_code == 200, good.text


def test_vllm_sampling_extensions_are_accepted(served, http):
    body = {**GOOD, "ignore_eos": True, "top_k": 5, "min_p": 0.0, "min_tokens": 2,
            "repetition_penalty": 1.0, "skip_special_tokens": True}
    reply = http.post(f"{served.api_url}/v1/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 4


def test_streaming_bad_input_is_4xx_before_the_stream(served, http):
    body = {**GOOD, "stream": True, "prompt": LONG_PROMPT}
    reply = http.post(f"{served.api_url}/v1/completions", json=body, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"

"""A stream its replica stops mid-flight ends with an error event an OpenAI client raises,
and is booked as cut; a whole stream is booked 200."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from openai import Stream
from ray.exceptions import ActorDiedError
from tandem.serve.ingress.exchange import Exchange
from tandem.serve.ingress.relay import STREAM_CUT_STATUS, relay

CHUNK = {"id": "cmpl-engine", "object": "text_completion", "created": 0, "model": "m",
         "choices": [{"index": 0, "text": "mipu", "finish_reason": None}]}


async def _engine(cut: bool):
    yield [CHUNK]
    if cut:
        raise ActorDiedError()


def _relayed(cut: bool) -> tuple[str, list[int], list[str]]:
    exchange = Exchange("req-1", time.time(), time.perf_counter())
    exchange.pool = "fast"
    booked, failed = [], []

    async def collect() -> str:
        return "".join([packet async for packet in relay(
            _engine(cut), exchange, True, lambda _, status: booked.append(status),
            failed.append)])

    return asyncio.run(collect()), booked, failed


def _client_reads(body: str) -> list:
    response = httpx.Response(200, content=body.encode(), headers={
        "content-type": "text/event-stream"}, request=httpx.Request("POST", "http://t/v1"))
    client = openai.OpenAI(api_key="k", base_url="http://t/v1")
    return list(Stream(cast_to=object, response=response, client=client))


def test_a_cut_stream_ends_with_an_error_event_the_openai_client_raises():
    body, booked, failed = _relayed(cut=True)
    assert body.startswith("data: {") and "req-1" in body  # what streamed before the cut
    assert "[DONE]" not in body
    last = json.loads(body.strip().split("\n\n")[-1][len("data: "):])
    assert last["error"]["code"] == STREAM_CUT_STATUS
    assert booked == [STREAM_CUT_STATUS] and failed == ["fast"]
    with pytest.raises(openai.APIError, match="stream was cut"):
        _client_reads(body)


def test_a_whole_stream_is_booked_200_and_reads_to_the_end():
    body, booked, failed = _relayed(cut=False)
    assert body.endswith("data: [DONE]\n\n")
    assert booked == [200] and failed == []
    assert [chunk["choices"][0]["text"] for chunk in _client_reads(body)] == ["mipu"]

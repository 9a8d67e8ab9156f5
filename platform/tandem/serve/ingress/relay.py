"""The fourth stage: a pool's SSE stream passed on to the client.

Per packet (a batch of the engine's chunks): the engine's completion id becomes the
request id, so the body `id` and `x-request-id` agree; the `usage` chunk is kept for
the request log; and where `telemetry.log_text` allows, the generated text is collected.
Whatever ends the stream (done, the client leaving: 499, the replica dying or being
retired mid-stream: `STREAM_CUT_STATUS`), the request is booked once, by `finish`. A
stream cut mid-flight ends with an SSE error event (which OpenAI clients raise as an
error), not with a truncated body: the client must not take a partial answer for a whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from ray.llm._internal.serve.core.ingress.utils import _openai_json_wrapper

from tandem.serve.ingress.dispatch import POOL_FAILURES
from tandem.serve.ingress.exchange import Exchange

STREAM_CUT_STATUS = 520  # the request log's status of a stream its replica stopped mid-flight


async def relay(stream, exchange: Exchange, log_text: bool, finish: Callable[[Exchange, int], Any],
                pool_failed: Callable[[str], None]) -> AsyncGenerator[str, None]:
    engine_id = None
    status = 200
    pieces: list[str] | None = [] if log_text else None
    try:
        async for packet in _openai_json_wrapper(stream):
            if engine_id is None and packet.startswith("data: {"):
                engine_id = chunk_id(packet)
            if engine_id:
                packet = packet.replace(engine_id, exchange.request_id)
            if '"usage":{"' in packet or '"usage": {"' in packet:
                exchange.usage = last_usage(packet) or exchange.usage
            if pieces is not None:
                pieces.extend(deltas(packet))
            yield packet
    except POOL_FAILURES:
        status = STREAM_CUT_STATUS  # bytes already went out: nothing to retry
        pool_failed(exchange.pool)  # keep other requests away until a health check answers
        yield cut_event()
    except BaseException:
        status = 499
        raise
    finally:
        if pieces is not None:
            exchange.response = "".join(pieces)
        finish(exchange, status)


def cut_event() -> str:
    """The SSE event that ends a cut stream: an OpenAI-style error, and no `[DONE]`."""
    return "data: " + json.dumps({"error": {
        "message": "the stream was cut: the replica serving it stopped mid-generation; retry "
                   "the request", "type": "server_error", "code": STREAM_CUT_STATUS}}) + "\n\n"


def deltas(packet: str) -> list[str]:
    """Generated text in one SSE packet (completion `text` or chat `delta.content`)."""
    out = []
    for line in packet.split("\n"):
        if not line.startswith("data: {"):
            continue
        try:
            chunk = json.loads(line[len("data: "):])
        except ValueError:
            continue
        for choice in chunk.get("choices") or ():
            text = choice.get("text")
            if text is None:
                text = (choice.get("delta") or {}).get("content")
            if text:
                out.append(text)
    return out


def chunk_id(packet: str) -> str | None:
    try:
        return json.loads(packet.split("\n", 1)[0][len("data: "):]).get("id")
    except ValueError:
        return None


def last_usage(packet: str) -> dict[str, Any] | None:
    for line in reversed(packet.split("\n")):
        if line.startswith("data: {") and '"usage"' in line:
            try:
                return json.loads(line[len("data: "):]).get("usage")
            except ValueError:
                return None
    return None

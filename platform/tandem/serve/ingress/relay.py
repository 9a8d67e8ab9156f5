"""The fourth stage: a pool's SSE stream passed on to the client.

Per packet (a batch of the engine's chunks): the engine's completion id becomes the
request id, so the body `id` and `x-request-id` agree; the `usage` chunk is kept for
the request log; and where `telemetry.log_text` allows, the generated text is collected.
Whatever ends the stream (done, the pool dying: 502, the client leaving: 499), the
request is booked once, by `finish`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from ray.llm._internal.serve.core.ingress.utils import _openai_json_wrapper

from tandem.serve.ingress.dispatch import POOL_FAILURES
from tandem.serve.ingress.exchange import Exchange


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
        status = 502  # the replica died mid-stream: nothing to retry, keep others away
        pool_failed(exchange.pool)
        raise
    except BaseException:
        status = 499
        raise
    finally:
        if pieces is not None:
            exchange.response = "".join(pieces)
        finish(exchange, status)


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

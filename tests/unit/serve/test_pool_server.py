"""The pool replica's stream: the first chunk leaves at once, the rest in batches."""

from __future__ import annotations

import asyncio
import time

import pytest
from tandem.serve.pool_server import first_then_batched


async def _chunks(delays_s: list[float], fail_after: int | None = None):
    for index, delay in enumerate(delays_s):
        await asyncio.sleep(delay)
        if fail_after is not None and index == fail_after:
            raise RuntimeError("engine died")
        yield f"chunk-{index}"


async def _collect(generator):
    started, out = time.perf_counter(), []
    async for batch in generator:
        out.append((time.perf_counter() - started, batch))
    return out


def test_first_chunk_is_not_held_for_the_batch_interval():
    # With Ray Serve LLM's own batcher the first chunk waits for the interval to end (0.2 s).
    batches = asyncio.run(_collect(first_then_batched(_chunks([0.01] * 6), interval_ms=200)))
    first_at, first = batches[0]
    assert first == ["chunk-0"]
    assert first_at < 0.1
    rest = [chunk for _, batch in batches[1:] for chunk in batch]
    assert rest == [f"chunk-{i}" for i in range(1, 6)]
    assert len(batches) <= 3  # the 5 later chunks (50 ms) went out in one or two batches


def test_an_empty_stream_yields_nothing_and_an_error_reaches_the_caller():
    assert asyncio.run(_collect(first_then_batched(_chunks([]), interval_ms=50))) == []
    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(_collect(first_then_batched(_chunks([0.0, 0.0, 0.0], fail_after=2),
                                                interval_ms=50)))
    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(_collect(first_then_batched(_chunks([0.0], fail_after=0), interval_ms=50)))

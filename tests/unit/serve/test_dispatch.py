"""A request waiting for its first item leaves a pool marked down instead of waiting for the
pool's replica to restart (Serve holds it meanwhile)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tandem.serve.ingress.dispatch import PoolDown, await_first_item


async def _reply(delay_s: float):
    await asyncio.sleep(delay_s)
    yield "first"
    yield "second"


def test_the_first_item_comes_through_with_the_rest_of_the_stream():
    async def run():
        first, stream = await await_first_item(_reply(0.05), "fast", set())
        return first, [item async for item in stream]

    assert asyncio.run(run()) == ("first", ["first", "second"])


def test_a_pool_marked_down_while_waiting_gives_the_request_back():
    down: set[str] = set()

    async def run():
        asyncio.get_running_loop().call_later(0.1, down.add, "fast")
        await await_first_item(_reply(3600), "fast", down)

    started = time.monotonic()
    with pytest.raises(PoolDown):
        asyncio.run(run())
    assert time.monotonic() - started < 1.0

"""The pool replica: Ray Serve LLM's `LLMServer`, sending a stream's first chunk at once.

Ray Serve LLM batches a stream's chunks every `stream_batching_interval_ms` (50 ms by
default) to cut per-chunk messages between replicas. It also holds the *first* chunk
until the first interval ends, so every streamed request's first token waits up to
50 ms that the engine had already spent: measured here, a 5 ms TTFT became 55 ms.
`PoolServer` yields the first chunk alone as soon as the engine produces it and
batches the rest as before, so TTFT follows the engine and throughput keeps the
batching.

Its LoRA adapters load from the MLflow registry (`tandem.serve.adapters`), one load per
adapter version at a time: Ray Serve LLM checks whether vLLM has an adapter and then loads
it, so two first requests for one adapter arriving together both loaded it, and vLLM
refused the second ("has already been loaded"), which failed that request (measured: a
500 under 16 concurrent streams).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve
from ray.llm._internal.serve.core.server.llm_server import LLMServer
from ray.llm._internal.serve.utils.batcher import Batcher


async def first_then_batched(chunks: AsyncGenerator[Any, None],
                             interval_ms: float | None) -> AsyncGenerator[list[Any], None]:
    """`[first chunk]` as soon as it exists, then lists of the chunks that arrived in each
    `interval_ms` (Ray Serve LLM's `Batcher`)."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return
    yield [first]
    async for batch in Batcher(chunks, interval_ms=interval_ms).stream():
        yield batch


class PoolServer(LLMServer):
    """`LLMServer` whose streams send their first chunk without waiting for a batch, and
    whose adapters load from the registry's cache."""

    def _init_shared(self, llm_config, engine_cls=None, model_downloader=None) -> None:
        from tandem.serve.adapters import RegistryAdapterLoader

        self._adapter_locks: dict[str, asyncio.Lock] = {}
        super()._init_shared(llm_config, engine_cls, model_downloader or RegistryAdapterLoader)

    async def _maybe_resolve_lora_from_multiplex(self) -> None:
        """Load the request's adapter version once, whatever arrives together."""
        adapter = serve.get_multiplexed_model_id()
        if not adapter:
            return
        async with self._adapter_locks.setdefault(adapter, asyncio.Lock()):
            await super()._maybe_resolve_lora_from_multiplex()

    def _batch_output_stream(self, generator: AsyncGenerator[Any, None]):
        return first_then_batched(generator, self._get_batch_interval_ms())

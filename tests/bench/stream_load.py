"""Closed-loop streaming load on an OpenAI-compatible endpoint, measured as the client sees it.

`streams` clients each send `requests` streaming completions of `tokens` tokens
(`ignore_eos`) back to back; with several models (`--model a,b`), client i asks model
i mod n. TTFT is the time from sending a request to the first SSE chunk with non-empty
text; tokens are each response's `usage.completion_tokens`. The load generator's own CPU
share is reported so a run can show it was not the bottleneck.
Run as a script (one process per measurement, apart from the test process):
`python tests/bench/stream_load.py URL --streams 16` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

PROMPT = "translate: red cat =>"


async def _one(session, url: str, model: str, tokens: int) -> tuple[float, int]:
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "ignore_eos": True,
            "stream": True, "temperature": 0, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    ttft, completion_tokens = None, 0
    async with session.post(f"{url}/v1/completions", json=body) as reply:
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {(await reply.text())[:300]}")
        async for raw in reply.content:
            if not raw.startswith(b"data: {"):
                continue
            if ttft is None and b'"text":"' in raw and b'"text":""' not in raw:
                ttft = time.perf_counter() - started
            if b'"usage":{' in raw:
                usage = json.loads(raw[6:]).get("usage")
                if usage:
                    completion_tokens = usage["completion_tokens"]
    return (ttft if ttft is not None else float("nan")), completion_tokens


async def measure(url: str, model: str, streams: int, requests: int, tokens: int,
                  api_key: str | None = None) -> dict:
    models = model.split(",")
    import aiohttp

    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    connector = aiohttp.TCPConnector(limit=streams)
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(_one(session, url, models[i % len(models)], tokens)
                               for i in range(streams)))  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()

        async def client(model: str) -> list[tuple[float, int]]:
            return [await _one(session, url, model, tokens) for _ in range(requests)]

        results = [r for batch in await asyncio.gather(
            *(client(models[i % len(models)]) for i in range(streams))) for r in batch]
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    ttfts = sorted(t * 1e3 for t, _ in results)
    return {"streams": streams, "requests": len(results),
            "tokens_per_s": sum(n for _, n in results) / wall,
            "ttft_p50_ms": statistics.median(ttfts), "ttft_p90_ms": ttfts[int(0.9 * len(ttfts))],
            "client_cpu_share": cpu / wall, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", default="tandem-tiny", help="a model, or several: a,b,c")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8, help="per stream")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.url, args.model, args.streams, args.requests,
                                         args.tokens, args.api_key))))


if __name__ == "__main__":
    main()

"""A streaming load generator for the OpenAI endpoint, by routing tier.

Used by the live routing tests and benchmarks, and handy for an operator checking a
deployment: each `Stream` is a number of clients that send streaming completions of
one tier back to back (closed loop, `run_load`), or a tier's share of requests arriving
at a fixed rate (open loop, `run_open_load`); every request's pool, version, status,
TTFT and TPOT (as the client saw them) come back as a `Result`, and `summarize` turns
them into SLO attainment per tier and estimated dollars per 1,000 requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tandem.routing.config import RoutingConfig


@dataclass(frozen=True)
class Stream:
    """`clients` concurrent clients sending `tier` requests of `max_tokens` tokens each."""

    tier: str
    max_tokens: int
    clients: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    tier: str
    status: int  # HTTP status; the error event's code for a stream cut mid-flight; 0 when
    # the connection failed or broke
    pool: str | None
    version: str | None
    request_id: str | None
    cost_usd: float
    ttft_ms: float | None
    tpot_ms: float | None
    tokens: int
    error: str | None = None
    started_at: float = 0.0  # POSIX seconds when the request was sent


async def _one(client, api_url: str, model: str, prompt: str, stream: Stream) -> Result:
    body = {"model": model, "prompt": prompt, "max_tokens": stream.max_tokens, "stream": True,
            "ignore_eos": True, "temperature": 0}
    headers = {"x-tandem-tier": stream.tier, **stream.headers}
    started_at = time.time()
    started = time.perf_counter()
    first = last = None
    tokens, status, reply_headers, cut = 0, 0, {}, None
    try:
        async with client.stream("POST", f"{api_url}/v1/completions", json=body,
                                 headers=headers) as reply:
            status, reply_headers = reply.status_code, reply.headers
            async for line in reply.aiter_lines():
                if line.startswith('data: {"error"'):  # the stream was cut mid-flight
                    cut = json.loads(line[len("data: "):])["error"]
                    status = int(cut.get("code") or 0)
                elif line.startswith("data: {") and '"text"' in line:
                    chunk = json.loads(line[len("data: "):])
                    if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                        last = time.perf_counter()
                        first = first or last
                        tokens += 1
    except Exception as error:  # a broken stream is a failed request, not a crashed run
        return Result(stream.tier, 0, reply_headers.get("x-tandem-pool"), None, None, 0.0, None,
                      None, tokens, f"{type(error).__name__}: {error}", started_at)
    ttft = (first - started) * 1e3 if first else None
    tpot = (last - first) * 1e3 / (tokens - 1) if first and tokens > 1 else None
    return Result(stream.tier, status, reply_headers.get("x-tandem-pool"),
                  reply_headers.get("x-tandem-model-version"), reply_headers.get("x-request-id"),
                  float(reply_headers.get("x-tandem-cost-usd") or 0.0), ttft, tpot, tokens,
                  cut and cut.get("message"), started_at=started_at)


async def run_load_async(api_url: str, streams: Sequence[Stream], duration_s: float, *,
                         model: str, api_key: str,
                         prompt: str = "translate: red cat =>") -> list[Result]:
    """Run every stream's clients for `duration_s` seconds; results in completion order."""
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    clients = sum(stream.clients for stream in streams)
    results: list[Result] = []
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=300, limits=limits,
                                 headers={"authorization": f"Bearer {api_key}"}) as client:
        async def loop(stream: Stream) -> None:
            while time.monotonic() < deadline:
                results.append(await _one(client, api_url, model, prompt, stream))

        await asyncio.gather(*(loop(stream) for stream in streams for _ in range(stream.clients)))
    return results


def run_load(api_url: str, streams: Sequence[Stream], duration_s: float, *, model: str,
             api_key: str, prompt: str = "translate: red cat =>") -> list[Result]:
    return asyncio.run(run_load_async(api_url, streams, duration_s, model=model, api_key=api_key,
                                      prompt=prompt))


async def run_open_load_async(api_url: str, streams: Sequence[Stream], rate_per_s: float,
                              duration_s: float, *, model: str, api_key: str, seed: int = 0,
                              prompt: str = "translate: red cat =>") -> list[Result]:
    """Requests arrive as a Poisson process at `rate_per_s` for `duration_s` seconds, each
    sent whether or not the earlier ones were answered (open loop), the streams' tiers in
    turn, weighted by their `clients`. The rate is the one clients offer, not the one a
    fixed number of closed-loop clients reach at the fleet's latency; every request is
    waited for. Results in arrival order."""
    import random

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    turns = [stream for stream in streams for _ in range(stream.clients)]
    arrivals, rng, at = [], random.Random(seed), 0.0
    while (at := at + rng.expovariate(rate_per_s)) < duration_s:
        arrivals.append(at)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=None),
                                 headers={"authorization": f"Bearer {api_key}"}) as client:
        async def one(index: int, at_s: float) -> Result:
            await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
            return await _one(client, api_url, model, prompt, turns[index % len(turns)])

        return list(await asyncio.gather(*(one(i, at_s) for i, at_s in enumerate(arrivals))))


def run_open_load(api_url: str, streams: Sequence[Stream], rate_per_s: float, duration_s: float,
                  *, model: str, api_key: str, seed: int = 0) -> list[Result]:
    return asyncio.run(run_open_load_async(api_url, streams, rate_per_s, duration_s, model=model,
                                           api_key=api_key, seed=seed))


def meets(result: Result, routing: RoutingConfig) -> bool:
    """Whether a request got what its tier promises (as the client measured it)."""
    targets = routing.targets(result.tier)
    return (result.status == 200 and result.ttft_ms is not None and result.ttft_ms <= targets.ttft_ms
            and (result.tpot_ms is None or result.tpot_ms <= targets.tpot_ms))


def summarize(results: Sequence[Result], routing: RoutingConfig) -> dict[str, dict[str, float]]:
    """Per tier: requests, failures, SLO attainment (fraction), $ per 1k requests, and the
    share of requests each pool took."""
    summary: dict[str, dict[str, float]] = {}
    for tier in sorted({result.tier for result in results}):
        mine = [result for result in results if result.tier == tier]
        row = {"requests": len(mine),
               "failed": sum(result.status != 200 for result in mine),
               "attainment": sum(meets(result, routing) for result in mine) / len(mine),
               "usd_per_1k": 1000 * sum(result.cost_usd for result in mine) / len(mine)}
        for pool in sorted({result.pool for result in mine if result.pool}):
            row[f"share_{pool}"] = sum(result.pool == pool for result in mine) / len(mine)
        summary[tier] = row
    return summary

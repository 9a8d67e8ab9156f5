"""One served model per test session: the tiny base model registered as `tandem-serve`
(`registered`, in tests/conftest.py) deployed on the local stack's two CPU pools
(two vLLM engines, three during a swap)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
MODEL = "tandem-serve"
LIMITED_KEY = {"name": "limited-tenant", "key": "tdm-test-limited", "requests_per_s": 0.5,
               "burst": 3}
# For load runs that test serving, not the rate limit: 16 clients of short streams send more
# than the default key's 50 requests/s.
LOAD_KEY = {"name": "load-test", "key": "tdm-test-load", "requests_per_s": 1000.0, "burst": 2000}
MAX_QUEUED = 8  # waiting requests per pool replica beyond its batch slots; then 503


def logged_rows(served, request_ids: set[str], timeout_s: float = 15.0) -> list[dict]:
    """Request-log rows of `request_ids` (duplicates included, so a test can check each is
    logged once), once the ingress has flushed them all (it flushes every 2 s)."""
    from tandem.telemetry.request_log import read_requests

    deadline = time.monotonic() + timeout_s
    while True:
        rows = [row for row in read_requests(served.home / "telemetry").to_pylist()
                if row["request_id"] in request_ids]
        if len({row["request_id"] for row in rows}) == len(request_ids) \
                or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def decisions(served) -> dict[str, dict]:
    """Routing decisions the ingress wrote, by request id (it writes every half second)."""
    from tandem.routing.log import parse_jsonl

    path = served.home / "routing" / "decisions.jsonl"
    time.sleep(1.5)
    return {record["request_id"]: record for record in parse_jsonl(path.read_text())}


def served_config(**pools):
    """apps/serve.local.yaml serving `tandem-serve`, with the short queue; `pools`: fields of
    a pool to change, by pool name (a changed pool is a new Serve application)."""
    from tandem.serve.config import ServeAppConfig, load_serve_config

    config = load_serve_config(REPO / "apps" / "serve.local.yaml", {
        "model": f"models:/{MODEL}@champion", "limits": {"max_queued_requests": MAX_QUEUED}})
    if not pools:
        return config
    data = config.model_dump(mode="json")
    for name, fields in pools.items():
        data["pools"][name].update(fields)
    return ServeAppConfig.model_validate(data)


@pytest.fixture(scope="package")
def served(stack, registered) -> Iterator:
    """The Serve stack from apps/serve.local.yaml, answering on stack.api_url, with two more
    inference keys (a tenant with a low rate limit; a load generator with a high one) and a
    short queue, so limits can be hit."""
    import json

    from tandem.auth import keys_file
    from tandem.serve.deploy import deploy, shutdown

    path = keys_file(stack.home)
    keys = json.loads(path.read_text())
    missing = [key for key in (LIMITED_KEY, LOAD_KEY) if key not in keys["api_keys"]]
    if missing:
        keys["api_keys"].extend(missing)
        path.write_text(json.dumps(keys))
    deploy(served_config(), stack)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{stack.api_url}/healthz", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    try:
        yield stack
    finally:
        shutdown(stack)


@pytest.fixture()
def client(served, http):
    from openai import OpenAI

    return OpenAI(base_url=f"{served.api_url}/v1", api_key=http.api_key, max_retries=0)

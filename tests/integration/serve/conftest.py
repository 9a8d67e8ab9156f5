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
MAX_QUEUED = 8  # waiting requests per pool replica beyond its batch slots; then 503


@pytest.fixture(scope="package")
def served(stack, registered) -> Iterator:
    """The Serve stack from apps/serve.local.yaml, answering on stack.api_url, with one more
    inference key (a tenant with a low rate limit) and a short queue, so limits can be hit."""
    import json

    from tandem.auth import keys_file
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown

    path = keys_file(stack.home)
    keys = json.loads(path.read_text())
    if LIMITED_KEY not in keys["api_keys"]:
        keys["api_keys"].append(LIMITED_KEY)
        path.write_text(json.dumps(keys))
    deploy(load_serve_config(REPO / "apps" / "serve.local.yaml", {
        "model": f"models:/{MODEL}@champion", "limits": {"max_queued_requests": MAX_QUEUED}}),
        stack)
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

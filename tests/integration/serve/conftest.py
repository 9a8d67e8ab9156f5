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


@pytest.fixture(scope="package")
def served(stack, registered) -> Iterator:
    """The Serve stack from apps/serve.local.yaml, answering on stack.api_url."""
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown

    deploy(load_serve_config(REPO / "apps" / "serve.local.yaml",
                             {"model": f"models:/{MODEL}@champion"}), stack)
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
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=f"{served.api_url}/v1", api_key="unused", max_retries=0)

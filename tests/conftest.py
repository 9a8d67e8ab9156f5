"""Shared fixtures: one local stack per test session, on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVED_MODEL = "tandem-serve"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def stack_environment(home: Path) -> dict[str, str]:
    """TANDEM_* variables for a stack under `home` whose ports clash with nothing."""
    from tandem.stack import free_port

    return {
        "TANDEM_HOME": str(home),
        "TANDEM_RAY_PORT": str(free_port()),
        "TANDEM_DASHBOARD_PORT": str(free_port()),
        "TANDEM_MLFLOW_PORT": str(free_port()),
        "TANDEM_API_PORT": str(free_port()),
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A running local stack (Ray head + MLflow) shared by the integration tests.

    The TANDEM_* variables are set in this process too, so library calls and
    `tandem` subprocesses address this stack, not a developer's own.
    """
    from tandem import stack as local_stack
    from tandem.settings import load_settings

    environment = stack_environment(tmp_path_factory.mktemp("tandem-home"))
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    settings = load_settings()
    local_stack.up(settings)
    try:
        yield settings
    finally:
        local_stack.down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def registered(stack):
    """The tiny base model registered once as `tandem-serve` (its own name, so the
    fine-tuning tests' `tandem-tiny` versions stay theirs); returns its version."""
    from tandem.models.tiny import build_tiny_base_model
    from tandem.registry import Lineage, register_checkpoint, resolve_version

    try:
        return resolve_version(f"models:/{SERVED_MODEL}@champion", stack.mlflow_url)[1]
    except Exception:
        pass
    model_dir = build_tiny_base_model(stack.models_dir / "base" / "tiny")
    return register_checkpoint(model_dir, SERVED_MODEL, Lineage(base_model="tiny"), stack.mlflow_url)


class KeyedSession:
    """`requests` with the local stack's inference key on every call (`.api_key` for others)."""

    def __init__(self, api_key: str) -> None:
        import requests

        self.api_key = api_key
        self._session = requests.Session()
        self._session.headers["authorization"] = f"Bearer {api_key}"

    def post(self, url: str, **kwargs):
        return self._session.post(url, **kwargs)

    def get(self, url: str, **kwargs):
        return self._session.get(url, **kwargs)


@pytest.fixture(scope="session")
def http(stack) -> KeyedSession:
    from tandem.auth import client_key

    return KeyedSession(client_key(stack.home))

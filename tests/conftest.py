"""Shared fixtures: one local stack per test session, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVED_MODEL = "tandem-serve"
# The session stack's home is fixed before anything uses Ray: Ray reads its auth mode at
# import and caches the token on first use, so this process may only ever know one token.
# Kept in the environment because modules that import this one (`from tests.conftest
# import ...`) run it a second time.
SESSION_HOME = Path(os.environ.get("TANDEM_TEST_SESSION_HOME")
                    or tempfile.mkdtemp(prefix="tandem-test-home-"))
os.environ["TANDEM_TEST_SESSION_HOME"] = str(SESSION_HOME)


def _ray_token_auth_for_this_process() -> None:
    from tandem.settings import load_settings
    from tandem.stack import ensure_ray_token, ray_cluster_env

    settings = load_settings({"TANDEM_HOME": str(SESSION_HOME)})
    ensure_ray_token(settings)  # also what local clusters of unit tests authenticate with
    os.environ.update(ray_cluster_env(settings))


_ray_token_auth_for_this_process()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


def listening_sockets(processes: list) -> list[tuple[str, int, object]]:
    """(address, port, process) of each TCP port these processes listen on."""
    import psutil

    found = []
    for process in processes:
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        found += [(s.laddr.ip, s.laddr.port, process) for s in sockets
                  if s.status == psutil.CONN_LISTEN]
    return found


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
        "TANDEM_PROMETHEUS_PORT": str(free_port()),
        "TANDEM_HAPROXY_STATS_PORT": str(free_port()),
        "TANDEM_HAPROXY_METRICS_PORT": str(free_port()),
    }


@pytest.fixture(scope="session")
def stack() -> Iterator:
    """A running local stack (Ray head + MLflow) shared by the integration tests.

    The TANDEM_* variables are set in this process too, so library calls and
    `tandem` subprocesses address this stack, not a developer's own.
    """
    from tandem import stack as local_stack
    from tandem.settings import load_settings

    environment = stack_environment(SESSION_HOME)
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

"""`tandem up/status/down` through the real CLI: idempotent, clear errors, nothing left behind."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import psutil
import pytest
import requests
from tandem.settings import is_loopback, load_settings
from tandem.stack import processes, ray_auth_headers

from tests.conftest import listening_sockets, stack_environment

pytestmark = pytest.mark.integration


def tandem(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def test_port_taken_is_a_clear_error(tmp_path):
    env = stack_environment(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["TANDEM_MLFLOW_PORT"])))
        holder.listen()
        result = tandem("up", env=env)
    assert result.returncode == 2
    assert f"port {env['TANDEM_MLFLOW_PORT']} (MLflow) is already in use" in result.stderr
    assert "TANDEM_MLFLOW_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "run").glob("*.json")), "nothing was started"


def test_up_status_down_lifecycle_leaves_no_process(tmp_path):
    env = stack_environment(tmp_path)
    settings = load_settings(env)
    first = tandem("up", env=env)
    try:
        assert first.returncode == 0, first.stderr
        assert "healthy" in first.stdout
        again = tandem("up", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
        status = tandem("status", env=env)
        assert status.stdout.count("healthy") >= 2
        assert f"ray job submit --address {settings.dashboard_url}" in status.stdout
        assert (f"starts with the first deploy on {settings.api_url} (stats "
                f"http://{settings.host}:{settings.haproxy_stats_port}/stats") in status.stdout
        for secret in ("ray_token", "keys.json"):  # Ray's token and the API keys: owner only
            assert stat.S_IMODE((tmp_path / "secrets" / secret).stat().st_mode) == 0o600
        assert f"API keys: generated {tmp_path / 'secrets' / 'keys.json'}" in first.stdout
        jobs_api = f"{settings.dashboard_url}/api/jobs/"
        assert requests.get(jobs_api, timeout=10).status_code == 401  # Ray token auth is on
        assert requests.get(jobs_api, headers=ray_auth_headers(settings), timeout=10).ok
        family = processes(settings)
        assert len(family) > 4  # gcs, raylet, dashboard, mlflow workers...
        listening = [address for address, _, _ in listening_sockets(family)]
        assert len(listening) > 10  # GCS, 3 raylets, agents, dashboard, MLflow
        assert [a for a in listening if not is_loopback(a)] == [], "a port open beyond loopback"
    finally:
        down = tandem("down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    survivors = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    assert "nothing to stop" in tandem("down", env=env).stdout
    assert "stopped" in tandem("status", env=env).stdout

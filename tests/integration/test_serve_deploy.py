"""`serve deploy apps/serve.local.yaml` works too: Ray Serve's own CLI builds the ingress and
its pools as one application. (After the serve package: its app has been shut down.) The
file's `cheap` pool only: one engine start is enough to show the composition, and each
costs a minute of `make test` on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"


def test_serve_deploy_runs_the_ingress_and_its_pools_as_one_application(stack, registered, http,
                                                                        tmp_path):
    from ray import serve
    from tandem.errors import UserError
    from tandem.serve.deploy import INGRESS_APP, connect, shutdown, swap
    from tandem.stack import ray_cluster_env

    config = yaml.safe_load((REPO / "apps" / "serve.local.yaml").read_text())
    config["http_options"]["port"] = stack.api_port
    args = config["applications"][0]["args"]
    args["model"] = f"models:/{MODEL}@champion"
    args["pools"] = {"cheap": args["pools"]["cheap"]}
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_cli = Path(sys.executable).parent / "serve"
    connect(stack)
    try:
        result = subprocess.run([str(serve_cli), "deploy", str(path), "--address", stack.dashboard_url],
                                cwd=REPO, env={**os.environ, **ray_cluster_env(stack)},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        reply = _first_answer(stack.api_url, http, timeout_s=600)
        assert reply.headers["x-tandem-pool"] == "cheap"
        assert reply.headers["x-tandem-model-version"] == str(registered)

        applications = serve.status().applications
        assert list(applications) == [INGRESS_APP]
        deployments = set(applications[INGRESS_APP].deployments)
        assert f"cheap-v{registered}:{MODEL}" in deployments, deployments
        with pytest.raises(UserError, match="tandem deploy"):
            swap(MODEL, registered, stack)
    finally:
        shutdown(stack)


def _first_answer(api_url: str, http, timeout_s: float) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = http.post(f"{api_url}/v1/completions", timeout=30,
                                  json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
            if reply.status_code == 200:
                return reply
            last = f"{reply.status_code} {reply.text[:200]}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(2)
    pytest.fail(f"the app `serve deploy` started never answered: {last}")

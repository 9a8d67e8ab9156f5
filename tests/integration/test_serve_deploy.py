"""`serve deploy apps/serve.local.yaml` works too: Ray Serve's own CLI builds the ingress and
its pools as one application. (After the serve package: its app has been shut down.) The
file's `cheap` pool only: one engine start is enough to show the composition, and each
costs a minute of `make test` on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.api_helpers import first_answer

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
        reply = first_answer(http, f"{stack.api_url}/v1/completions",
                             {"model": MODEL, "prompt": "hi", "max_tokens": 2}, timeout_s=600,
                             what="the app `serve deploy` started")
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


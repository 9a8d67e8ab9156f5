"""A fleet plan deploys: `tandem plan`'s Serve config (two GPU types) runs on the local stack with
`tandem deploy --local` and answers through the API. (After the serve package: its app has
been shut down; this test removes what it deployed.) Two engines start side by side, one per
local pool node, so it costs about one engine start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.api_helpers import first_answer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"


def test_an_emitted_plan_deploys_locally_and_answers(stack, registered, http, tmp_path,
                                                     monkeypatch, capsys):
    from tandem.catalog import load_catalog
    from tandem.cli import main
    from tandem.perf import build_replica_model
    from tandem.planner.emit import serve_config_for_fleet, write_serve_config
    from tandem.serve.deploy import current_table, shutdown

    catalog = load_catalog()
    profile = catalog.model("llama-3.1-8b")
    replicas = {gpu: build_replica_model(catalog, gpu, profile, "fp8") for gpu in ("H100", "L4")}
    path = tmp_path / "plan.yaml"
    write_serve_config(path, serve_config_for_fleet({"H100": 3, "L4": 2}, replicas, profile.name,
                                                    model_uri=f"models:/{MODEL}@champion"))
    monkeypatch.chdir(REPO)  # `--local` reads the local pools' settings from apps/serve.local.yaml
    try:
        assert main(["deploy", "--config", str(path), "--local", "--timeout", "300"]) == 0
        printed = capsys.readouterr().out
        assert "pool h100: 3 x H100 -> 1 cpu replica on local node fast" in printed, printed
        assert "pool l4: 2 x L4 -> 1 cpu replica on local node cheap" in printed, printed

        reply = first_answer(http, f"{stack.api_url}/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": "translate: red cat"}],
            "max_tokens": 4}, timeout_s=120, what="the planned fleet")
        body = reply.json()
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["completion_tokens"] > 0
        assert reply.headers["x-tandem-pool"] in {"h100", "l4"}
        routes = current_table(stack)["models"][MODEL]["pools"]
        assert {pool: route["price_per_hour"] for pool, route in routes.items()} == {
            "h100": catalog.gpu("H100").price_per_hour, "l4": catalog.gpu("L4").price_per_hour}
    finally:
        shutdown(stack)


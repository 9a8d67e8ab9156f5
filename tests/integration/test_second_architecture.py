"""The second architecture (a tiny Qwen2) through everything the Llama goes through: the loop
of `make demo` (full fine-tune as a Ray job -> register -> serve -> drift and corrections ->
retrain -> canary -> promote), then a LoRA adapter on the promoted Qwen2 as a Ray job,
served beside it, retrained from its parent the way the watcher retrains it, and promoted
without restarting the engine. Nothing in the platform names a model class; this shows it.

Qwen2's 2.4 M parameters train ~6x slower than the Llama's 0.4 M on 2 cores: `make test-slow`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-qwen2"
ADAPTER = "tandem-qwen2-support"
PROMPTS = ["translate: red cat =>", "translate: green bird =>"]


def test_qwen2_runs_the_loop_and_serves_a_retrained_adapter(stack, repo_root, http,
                                                            monkeypatch):
    from tandem.demos.loop import StoryConfig, run_story, summary_lines
    from tandem.registry import CHAMPION, alias_version, version_tags
    from tandem.serve.config import ServeAppConfig, load_serve_config
    from tandem.serve.deploy import current_table, deploy, shutdown, swap
    from tandem.triggers.policies import TriggerResult
    from tandem.watch.build import retrain_overrides

    monkeypatch.chdir(repo_root)  # jobs upload the working dir
    cheap = load_serve_config(REPO / "apps" / "serve.local.yaml").pools["cheap"]
    config = StoryConfig(
        model=MODEL, finetune_config="jobs/configs/tiny-qwen2.yaml",
        finetune_overrides=["--eval_max_examples=64"],
        serve_overrides={"pools": {"cheap": cheap.model_dump(mode="json")}},
        drift_requests=120, canary_requests=30, eval_rows=50, clients=4,
        watch={"retrain_sample": 1600, "correction_repeats": 3,
               "finetune_config": "jobs/configs/tiny-qwen2.yaml",
               "finetune_overrides": ["--eval_max_examples=64", "--epochs=6"],
               "new_labels": {"min_corrections": 40}, "drift": {"min_requests": 60},
               "quality": {"min_rated": 1000},
               "rollout": {"canary_share": 0.5, "canary_min_requests": 10}})
    try:
        result = run_story(config, stack)
        print("\n".join(summary_lines(result, stack, MODEL)))
        assert [v.split(":")[0] for v in result.verdicts] == ["canary", "promote"], result
        champion = alias_version(MODEL, CHAMPION, stack.mlflow_url)
        assert champion == result.champion_after != result.champion_before
        assert result.exact_match_after >= result.exact_match_before + 0.1, result

        base = f"models:/{MODEL}/{champion}"
        _job(stack, ["--config", "jobs/configs/tiny-adapter.yaml",
                     f"--base_model=models:/{MODEL}@champion", f"--registered_model={ADAPTER}",
                     "--epochs=2", "--eval_max_examples=20"])
        first = alias_version(ADAPTER, CHAMPION, stack.mlflow_url)
        assert version_tags(ADAPTER, first, stack.mlflow_url)["tandem.adapter_base"] == base

        data = load_serve_config(REPO / "apps" / "serve.local.yaml", {
            "model": f"models:/{MODEL}@champion"}).model_dump(mode="json")
        data["adapters"] = [f"models:/{ADAPTER}@champion"]
        data["pools"]["cheap"]["adapters"] = {"max_adapters": 2}
        deploy(ServeAppConfig.model_validate(data), stack)
        assert _answered_by(stack, http, ADAPTER) == str(first)
        assert _answered_by(stack, http, MODEL) == str(champion)

        # the watcher's retraining of an adapter: the same overrides, from the parent adapter
        trigger = TriggerResult("new_labels", True, "retrain", "test", "new_labels@test")
        overrides = retrain_overrides(ADAPTER, Path("unused"), trigger, first, adapter=True)
        overrides = [o for o in overrides if not o.startswith("--train_data")]
        _job(stack, ["--config", "jobs/configs/tiny-adapter.yaml",
                     f"--base_model=models:/{MODEL}@champion", "--epochs=1",
                     "--eval_max_examples=20", *overrides])
        second = alias_version(ADAPTER, "challenger", stack.mlflow_url)
        tags = version_tags(ADAPTER, second, stack.mlflow_url)
        assert second != first and tags["tandem.parent_version"] == str(first)
        assert tags["tandem.adapter_base"] == base
        apps = {pool: route["app"] for pool, route in
                current_table(stack)["models"][MODEL]["pools"].items()}
        swap(ADAPTER, second, stack)
        assert _answered_by(stack, http, ADAPTER) == str(second)
        assert {pool: route["app"] for pool, route in
                current_table(stack)["models"][MODEL]["pools"].items()} == apps
    finally:
        shutdown(stack, log=lambda _: None)


def _job(stack, arguments: list[str]) -> None:
    from tandem.ray_jobs import job_client, submit_job

    from tests.integration.jobs_helpers import wait_for_job

    client = job_client(stack)
    job_id = submit_job(stack, ["python", "jobs/finetune.py", *arguments])
    status = wait_for_job(client, job_id, timeout_s=1800)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-3000:]


def _answered_by(stack, http, model: str) -> str:
    reply = http.post(f"{stack.api_url}/v1/completions", timeout=120, json={
        "model": model, "prompt": PROMPTS[0], "max_tokens": 4})
    assert reply.status_code == 200, reply.text
    return reply.headers["x-tandem-model-version"]


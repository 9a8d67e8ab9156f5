"""The whole loop on the real LLM, as `make demo-real` tells it (jobs/demo-real.yaml):
SmolLM2-135M-Instruct imported from its PyPI package, a LoRA adapter fine-tuned on it (v1),
served on both pools, corrected by users on the new slice, retrained (v2), gated by a vLLM
engine in a Ray task, canaried and promoted; v2 must beat v1 on the new slice through the
API by 30 points of exact match. ~25 minutes on 2 cores: `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_the_real_model_learns_the_new_slice_from_its_users(stack, repo_root, monkeypatch):
    from tandem.config import load_config
    from tandem.demos.loop import StoryConfig, run_story, summary_lines
    from tandem.registry import CHAMPION, alias_version, version_tags
    from tandem.serve.deploy import shutdown

    monkeypatch.chdir(repo_root)  # jobs upload the working dir
    config = load_config(StoryConfig, REPO / "jobs" / "demo-real.yaml")
    try:
        result = run_story(config, stack)
        print("\n".join(summary_lines(result, stack, config.model)))
    finally:
        shutdown(stack, log=lambda _: None)

    assert [v.split(":")[0] for v in result.verdicts] == ["canary", "promote"], result.verdicts
    new = alias_version(config.model, CHAMPION, stack.mlflow_url)
    assert new == result.champion_after and new != result.champion_before
    tags = version_tags(config.model, new, stack.mlflow_url)
    assert tags["tandem.adapter_base"].startswith("models:/smollm2-135m-instruct/")
    assert tags["tandem.parent_version"] == str(result.champion_before)
    assert result.exact_match_after >= result.exact_match_before + 0.30, result

"""Offline scores of a model version: greedy exact match on the original holdout and on
the feedback holdout, computed the way training scores its checkpoints.

The champion and the challenger are scored by the same code on the same rows at the same
time, so the gate compares like with like (a training run's own `eval_exact_match` was
measured on whatever holdout its config named).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.rollout.verdicts import OfflineScores

MAX_NEW_TOKENS = 12  # FinetuneConfig.eval_max_new_tokens' default


def exact_match_of(model: Any, tokenizer: Any, rows: Sequence[dict]) -> float:
    """Greedy exact match of `model` on `rows` (`prompt`/`completion`)."""
    from tandem.data.task import exact_match
    from tandem.models.generate import greedy_complete

    predictions = greedy_complete(model, tokenizer, [row["prompt"] for row in rows],
                                  MAX_NEW_TOKENS)
    return exact_match(predictions, [row["completion"] for row in rows])


def offline_scores(model_dir: Path, base_dir: Path | None, holdout: Sequence[dict],
                   feedback_holdout: Sequence[dict]) -> OfflineScores:
    """The model in `model_dir` (loaded once; an adapter is merged onto `base_dir`) scored on
    both sets."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir or model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir or model_dir)
    if base_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    return OfflineScores(
        holdout=exact_match_of(model, tokenizer, holdout),
        feedback=(exact_match_of(model, tokenizer, feedback_holdout) if feedback_holdout
                  else None),
        feedback_rows=len(feedback_holdout))


def quality_per_tier(model_dir: Path, rows_by_tier: dict[str, Sequence[dict]]) -> dict[str, float]:
    """Tier -> greedy exact match of the model in `model_dir` on that tier's rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return {tier: exact_match_of(model, tokenizer, rows) for tier, rows in rows_by_tier.items()}

"""Offline scores of model versions: greedy exact match on the original holdout and on the
feedback holdout (the gate), or per tier (the distillation job), answered by a vLLM engine
in a Ray task (`tandem.rollout.engine`), never by a model loaded in the caller's process.

The versions compared are scored by the same engine on the same rows at the same time, so
the gate compares like with like (a training run's own `eval_exact_match` was measured on
whatever holdout its config named). Prompts reach the engine in the models' prompt format
(`tandem.data.prompts`), as they are served.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.rollout.engine import Candidate, answer_on_engine
from tandem.rollout.verdicts import OfflineScores

MAX_NEW_TOKENS = 16  # the longest task answer is 4 words of up to 3 tokens each, plus EOS


def _exact_match(answers: Sequence[str], rows: Sequence[dict]) -> float:
    from tandem.data.task import exact_match

    return exact_match(list(answers), [row["completion"] for row in rows])


def offline_scores(candidates: Sequence[Candidate], holdout: Sequence[dict],
                   feedback_holdout: Sequence[dict], prompt_format: str = "text",
                   use_gpu: bool = False) -> tuple[OfflineScores, ...]:
    """Each candidate scored on both sets (`prompt`/`completion` rows of the task's format)."""
    rows = list(holdout) + list(feedback_holdout)
    answered = answer_on_engine(candidates, [row["prompt"] for row in rows], MAX_NEW_TOKENS,
                                prompt_format, use_gpu)
    cut = len(holdout)
    return tuple(OfflineScores(
        holdout=_exact_match(answers[:cut], holdout),
        feedback=_exact_match(answers[cut:], feedback_holdout) if feedback_holdout else None,
        feedback_rows=len(feedback_holdout)) for answers in answered)


def quality_per_tier(candidates: Sequence[Candidate], rows_by_tier: dict[str, Sequence[dict]],
                     prompt_format: str = "text", use_gpu: bool = False,
                     ) -> list[dict[str, float]]:
    """Per candidate: tier -> greedy exact match on that tier's rows."""
    tiers = list(rows_by_tier)
    rows = [row for tier in tiers for row in rows_by_tier[tier]]
    answered = answer_on_engine(candidates, [row["prompt"] for row in rows], MAX_NEW_TOKENS,
                                prompt_format, use_gpu)
    scores = []
    for answers in answered:
        by_tier, start = {}, 0
        for tier in tiers:
            count = len(rows_by_tier[tier])
            by_tier[tier] = _exact_match(answers[start:start + count], rows_by_tier[tier])
            start += count
        scores.append(by_tier)
    return scores

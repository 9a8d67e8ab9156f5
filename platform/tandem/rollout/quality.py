"""A model version's quality per tier, kept current from production: the exact match the
distillation job measured on held-out live prompts, pooled with the answers users rated
since the version started serving (as a canary share or as the champion).

The distillation job records, per tier, the held-out exact match and its prompt count
(`tandem.quality_heldout.<tier>`, `tandem.quality_prompts.<tier>`) beside the quality the
router reads (`tandem.quality.<tier>`). Every rated answer of the version is one more
judgement of the same kind: right when its rating is positive and any correction equals
the answer (`tandem.routing.models.judged_right`, as the router's live quality judges).
So the recorded quality becomes the exact match over both, and
`tandem.quality_rated.<tier>` counts the rated answers in it. The router reacts to
ratings sooner, per ingress replica (`LiveQuality`); this makes the judgement durable,
the same for every replica, and visible in the MLflow UI.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from tandem.registry import QUALITY_TAG
from tandem.routing.models import judged_right
from tandem.telemetry.feedback import FeedbackScale, normalized_score
from tandem.telemetry.window import ratings
from tandem.tenants import bounded_by_tenant

HELDOUT = "tandem.quality_heldout."
PROMPTS = "tandem.quality_prompts."
RATED = "tandem.quality_rated."


def heldout_tags(scores: Mapping[str, float], prompts: Mapping[str, int]) -> dict[str, str]:
    """The tags the distillation job sets on a version it scored: per tier the held-out
    exact match, its prompt count, and the quality the router reads (the same, until
    answers are rated)."""
    tags = {}
    for tier, score in scores.items():
        tags[f"{QUALITY_TAG}{tier}"] = tags[f"{HELDOUT}{tier}"] = f"{score:.4f}"
        tags[f"{PROMPTS}{tier}"] = str(prompts[tier])
    return tags


def rated_answers(requests: pa.Table, feedback: pa.Table, *, model: str, version: int,
                  scale: FeedbackScale) -> dict[str, tuple[int, int]]:
    """Tier -> (answers judged right, answers rated) of `version` of `model`, each
    request's latest rating, with no tenant over half of a tier's (`bounded_by_tenant`)."""
    answered = requests.filter(pc.and_(pc.and_(pc.equal(requests["model"], model),
                                               pc.equal(requests["model_version"], version)),
                                       pc.equal(requests["status"], 200)))
    by_id = {row["request_id"]: row
             for row in answered.select(["request_id", "tier", "response"]).to_pylist()}
    judged: dict[str, list[tuple[bool, str | None]]] = {}
    for rating in ratings(feedback, answered):
        row = by_id.get(rating.request_id)
        if row is None:
            continue
        right = judged_right(normalized_score(rating.score, scale), rating.correction,
                             row["response"])
        judged.setdefault(row["tier"] or "standard", []).append((right, rating.tenant))
    counts = {tier: bounded_by_tenant(answers, lambda answer: answer[1])
              for tier, answers in judged.items()}
    return {tier: (sum(right for right, _ in answers), len(answers))
            for tier, answers in counts.items()}


def pooled_tags(tags: Mapping[str, str], rated: Mapping[str, tuple[int, int]]) -> dict[str, str]:
    """The `tandem.quality.<tier>` and `tandem.quality_rated.<tier>` tags a version should
    carry: per tier its held-out exact match pooled with its rated answers (a tier never
    scored held out takes the rated answers alone). Empty when nothing was rated."""
    out = {}
    for tier, (right, count) in rated.items():
        if not count:
            continue
        try:
            heldout = float(tags[f"{HELDOUT}{tier}"])
            prompts = int(tags[f"{PROMPTS}{tier}"])
        except (KeyError, ValueError):
            heldout, prompts = 0.0, 0
        quality = (heldout * prompts + right) / (prompts + count)
        out[f"{QUALITY_TAG}{tier}"] = f"{quality:.4f}"
        out[f"{RATED}{tier}"] = str(count)
    return out

"""Turn the request log and the feedback store into the `TriggerWindow` the policies judge.

Policies are pure functions of a window, so this is where telemetry meets them: a pure
function of the two tables (as `read_requests` and `read_feedback` return them) and of
`now`, over the ratings `tandem.telemetry.window` joins to their requests. Per-version
measures (scores, baseline) are about the champion; traffic measures (prompts, SLO
misses, cost) are about every request for the model, since drift, latency and cost do
not depend on which version answered.

The request log does not keep the router's SLO-miss flag, so misses are read from the
routing reason (`tandem.routing.cost_policy`): no pool met the targets, or a tier's
budget cap spilled the request to the cheapest pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tandem.telemetry.feedback import FeedbackScale, normalized_score
from tandem.telemetry.window import between, prompt_text, ratings
from tandem.triggers.policies import TriggerWindow
from tandem.triggers.profile import DataProfile


@dataclass(frozen=True)
class Baseline:
    """What "worse" is measured against: a version's mean normalized score and negative share."""

    mean_score: float | None = None
    negative_rate: float | None = None

    @classmethod
    def of(cls, scores: Sequence[float]) -> Baseline | None:
        """The baseline of normalized `scores`, or None when there are none."""
        if not scores:
            return None
        return cls(sum(scores) / len(scores), sum(score < 0 for score in scores) / len(scores))


def gather_window(requests: pa.Table, feedback: pa.Table, *, model: str, version: int | None,
                  now: float, window_s: float, last_n: int, baseline: Baseline | None,
                  profile: DataProfile | None, scale: FeedbackScale,
                  slo_miss_target: float | None, cost_target_usd: float | None,
                  last_training_time: float | None,
                  last_distillation_time: float | None = None) -> TriggerWindow:
    """The window of `model`'s telemetry in `(now - window_s, now]` for the policies.

    Args:
        requests, feedback: tables of `REQUEST_SCHEMA` and `FEEDBACK_SCHEMA`.
        version: the champion version the scores are about; None for every version.
        last_n: keep the last N scores of the window.
        baseline: the champion's baseline; None derives it from its earliest `last_n`
            ratings that are not among the window's scores (none if there are no such).
        profile: the champion's training prompt profile, for drift.
        scale: the feedback score scale, normalized to [-1, 1].
        last_training_time: corrections after this time (POSIX seconds) count as new;
            None counts them all.
        last_distillation_time: answers with logged text after this time count toward the
            next distillation; None counts them all.
    """
    start = now - window_s
    model_ratings = [r for r in ratings(between(feedback, None, now), requests) if r.model == model]
    champion = [r for r in model_ratings if version is None or r.model_version == version]
    recent = [r for r in champion if r.time > start][-last_n:]
    if baseline is None:
        recent_ids = {r.request_id for r in recent}
        earlier = [normalized_score(r.score, scale) for r in champion
                   if r.request_id not in recent_ids][:last_n]
        baseline = Baseline.of(earlier)
    corrections = sum(r.correction is not None and
                      (last_training_time is None or r.time > last_training_time)
                      for r in model_ratings)
    traffic = between(requests, start, now)
    traffic = traffic.filter(pc.and_(pc.equal(traffic["model"], model),
                                     pc.less(traffic["status"], 400)))
    rows = traffic.select(["prompt", "slo_met", "cost_usd"]).to_pylist()
    answered = between(requests, last_distillation_time, now)
    answers = pc.sum(pc.and_(pc.and_(pc.equal(answered["model"], model),
                                     pc.equal(answered["status"], 200)),
                             pc.is_valid(answered["response"]))).as_py() or 0
    return TriggerWindow(
        model=model, model_version=version,
        scores=tuple(normalized_score(r.score, scale) for r in recent),
        baseline_mean_score=baseline.mean_score if baseline else None,
        baseline_negative_rate=baseline.negative_rate if baseline else None,
        prompts=tuple(prompt_text(row["prompt"]) for row in rows if row["prompt"] is not None),
        profile=profile, corrections_since_training=corrections, requests=len(rows),
        slo_judged=sum(row["slo_met"] is not None for row in rows),
        slo_misses=sum(row["slo_met"] is False for row in rows),
        cost_per_request_usd=sum(row["cost_usd"] for row in rows) / len(rows) if rows else None,
        slo_miss_target=slo_miss_target, cost_target_usd=cost_target_usd,
        answers_since_distillation=int(answers))

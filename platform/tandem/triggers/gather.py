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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tandem.telemetry.feedback import FeedbackScale, normalized_score
from tandem.telemetry.window import between, prompt_text, ratings
from tandem.triggers.policies import TriggerWindow
from tandem.triggers.profile import DataProfile

DRIFT_SAMPLE = 5000  # prompts a tick's drift is judged on, at most


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
                  corrections_since_training: int = 0,
                  answers_since_distillation: int = 0) -> TriggerWindow:
    """The window of `model`'s telemetry in `(now - window_s, now]` for the policies.

    Args:
        requests, feedback: tables of `REQUEST_SCHEMA` and `FEEDBACK_SCHEMA`.
        version: the champion version the scores are about; None for every version.
        last_n: keep the last N scores of the window.
        baseline: the champion's baseline; None derives it from its earliest `last_n`
            ratings that are not among the window's scores (none if there are no such).
        profile: the champion's training prompt profile, for drift.
        scale: the feedback score scale, normalized to [-1, 1].
        corrections_since_training, answers_since_distillation: the model's corrected
            requests since its last training run, and its answers with logged text since
            its student was last distilled (running counts: `tandem.watch.tail`).

    The tables need to hold only what the window judges: the requests in the window, and
    the model's feedback from its champion's first and last ratings (the loop passes
    `TelemetryTail.window` and `TelemetryTail.ratings()`). Drift is judged on at most
    `DRIFT_SAMPLE` of the window's prompts, evenly spaced in time, so a tick's cost does
    not grow with the traffic.
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
    traffic = between(requests, start, now)
    traffic = traffic.filter(pc.and_(pc.equal(traffic["model"], model),
                                     pc.less(traffic["status"], 400)))
    prompts = traffic["prompt"].drop_null()
    step = max(1, math.ceil(len(prompts) / DRIFT_SAMPLE))
    slo_met = traffic["slo_met"]
    return TriggerWindow(
        model=model, model_version=version,
        scores=tuple(normalized_score(r.score, scale) for r in recent),
        baseline_mean_score=baseline.mean_score if baseline else None,
        baseline_negative_rate=baseline.negative_rate if baseline else None,
        prompts=tuple(prompt_text(prompt) for prompt in prompts[::step].to_pylist()),
        profile=profile, corrections_since_training=corrections_since_training,
        requests=traffic.num_rows, slo_judged=len(slo_met) - slo_met.null_count,
        slo_misses=pc.sum(pc.invert(slo_met)).as_py() or 0,
        cost_per_request_usd=pc.mean(traffic["cost_usd"]).as_py() if traffic.num_rows else None,
        slo_miss_target=slo_miss_target, cost_target_usd=cost_target_usd,
        answers_since_distillation=answers_since_distillation)

"""When a retrained version may go live, stay live, or must go: pure verdicts over measurements.

A challenger passes three gates, each judged here from plain numbers so the rules can
be tested without a model or a cluster:

1. **Offline** (`judge_offline`): exact match on the original holdout (it must not forget
   the old slice by more than `max_holdout_drop`) and on the feedback holdout, the
   users' corrections kept out of its training set (it must beat the champion there by
   `min_gain`). Passing earns a canary, failing a rejection.
2. **Canary** (`judge_canary`): a share of live traffic; once both versions have
   `canary_min_requests` answered requests, the challenger is promoted unless its error
   rate is worse by more than `max_error_rate_increase` or its mean feedback score is
   worse by more than `max_score_drop`. A canary that never gathers enough traffic in
   `canary_max_s` is rejected: promoting unobserved is what the canary exists to prevent.
3. **After promotion** (`judge_promoted`): the same two measures against what the previous
   champion delivered; a regression rolls back, `watch_promoted_s` of good service makes
   the version stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from tandem.config import StrictConfig

Action = Literal["canary", "reject", "wait", "promote", "rollback", "keep", "stable"]


class RolloutConfig(StrictConfig):
    """Thresholds of the three gates and the canary's shape (`rollout:` in the watch config)."""

    min_gain: float = Field(0.05, ge=0, le=1, description="Exact-match gain on the feedback "
                            "holdout the challenger needs over the champion to be canaried.")
    max_holdout_drop: float = Field(0.05, ge=0, le=1, description="Largest exact-match loss on "
                                    "the original holdout accepted (forgetting the old slice).")
    feedback_holdout_share: float = Field(0.2, ge=0, lt=1, description="Share of corrections "
                                          "kept out of retraining to judge it.")
    canary_share: float = Field(0.2, gt=0, lt=1, description="Share of the model's requests "
                                "the challenger answers during its canary.")
    canary_pools: list[str] | None = Field(None, description="Pools the canary runs on "
                                           "(default: every pool of the deployment).")
    canary_min_requests: int = Field(20, ge=1, description="Answered requests each version "
                                     "needs during the canary before it is judged.")
    canary_max_s: float = Field(1800.0, gt=0, description="A canary without enough traffic "
                                "after this long is rejected.")
    max_error_rate_increase: float = Field(0.02, ge=0, le=1, description="Worst accepted rise "
                                           "of the 5xx share over the champion's.")
    max_score_drop: float = Field(0.2, ge=0, le=2, description="Worst accepted fall of the mean "
                                  "feedback score (normalized to -1..1) over the champion's.")
    min_rated: int = Field(5, ge=1, description="Rated requests a version needs before its "
                           "feedback score counts.")
    watch_promoted_s: float = Field(3600.0, gt=0, description="How long a promoted version is "
                                    "watched for a regression before it is stable.")


@dataclass(frozen=True)
class OfflineScores:
    """Exact match of one version on the original holdout and on the feedback holdout."""

    holdout: float
    feedback: float | None  # None: no corrections were held out
    feedback_rows: int = 0


@dataclass(frozen=True)
class LiveStats:
    """What one version delivered on live traffic over some window."""

    requests: int  # answered, any status
    errors: int  # 5xx among them
    rated: int = 0
    mean_score: float | None = None  # normalized to -1..1; None when nothing was rated

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


def judge_offline(champion: OfflineScores, challenger: OfflineScores,
                  config: RolloutConfig) -> Verdict:
    """Canary the challenger, or reject it, from its offline scores against the champion's."""
    drop = champion.holdout - challenger.holdout
    if drop > config.max_holdout_drop:
        return Verdict("reject", f"holdout exact match fell {champion.holdout:.3f} -> "
                                 f"{challenger.holdout:.3f} (max drop {config.max_holdout_drop:g})")
    if challenger.feedback is None or champion.feedback is None:
        gain, measure = challenger.holdout - champion.holdout, "holdout"
        before, after = champion.holdout, challenger.holdout
    else:
        gain, measure = challenger.feedback - champion.feedback, "feedback holdout"
        before, after = champion.feedback, challenger.feedback
    summary = f"{measure} exact match {before:.3f} -> {after:.3f}"
    if gain < config.min_gain:
        return Verdict("reject", f"{summary}: gain {gain:+.3f} below {config.min_gain:g}")
    return Verdict("canary", f"{summary} (holdout {champion.holdout:.3f} -> "
                             f"{challenger.holdout:.3f})")


def _regression(current: LiveStats, reference: LiveStats, config: RolloutConfig,
                names: tuple[str, str]) -> str | None:
    """Why `current` is worse than `reference` beyond the thresholds, or None."""
    mine, theirs = names
    rise = current.error_rate - reference.error_rate
    if rise > config.max_error_rate_increase:
        return (f"{mine} error rate {current.error_rate:.1%} vs {theirs} "
                f"{reference.error_rate:.1%} (max rise {config.max_error_rate_increase:.1%})")
    if (current.rated >= config.min_rated and reference.rated >= config.min_rated
            and current.mean_score is not None and reference.mean_score is not None
            and reference.mean_score - current.mean_score > config.max_score_drop):
        return (f"{mine} mean feedback {current.mean_score:+.2f} vs {theirs} "
                f"{reference.mean_score:+.2f} (max drop {config.max_score_drop:g})")
    return None


def judge_canary(champion: LiveStats, challenger: LiveStats, elapsed_s: float,
                 config: RolloutConfig) -> Verdict:
    """Promote, reject, or wait for more canary traffic."""
    enough = min(champion.requests, challenger.requests) >= config.canary_min_requests
    if not enough:
        if elapsed_s >= config.canary_max_s:
            return Verdict("reject", f"canary saw {challenger.requests} challenger and "
                                     f"{champion.requests} champion requests in "
                                     f"{elapsed_s:.0f} s (needs {config.canary_min_requests})")
        return Verdict("wait", f"canary at {challenger.requests}/{config.canary_min_requests} "
                               "challenger requests")
    worse = _regression(challenger, champion, config, ("challenger", "champion"))
    if worse:
        return Verdict("reject", f"canary: {worse}")
    score = ("" if challenger.mean_score is None
             else f", mean feedback {challenger.mean_score:+.2f}")
    return Verdict("promote", f"canary: {challenger.requests} requests, error rate "
                              f"{challenger.error_rate:.1%} (champion {champion.error_rate:.1%})"
                              f"{score}")


def judge_promoted(current: LiveStats, previous: LiveStats, elapsed_s: float,
                   config: RolloutConfig) -> Verdict:
    """Roll a promoted version back, keep watching it, or call it stable."""
    if current.requests >= config.canary_min_requests:
        worse = _regression(current, previous, config, ("promoted", "previous champion"))
        if worse:
            return Verdict("rollback", worse)
    if elapsed_s >= config.watch_promoted_s:
        return Verdict("stable", f"no regression in {elapsed_s:.0f} s after promotion")
    return Verdict("keep", f"watching: {current.requests} requests since promotion")

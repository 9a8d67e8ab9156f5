"""When to retrain, as pure policies: a window of telemetry in, a decision with its reason out.

The retraining loop (`tandem watch`) gathers a `TriggerWindow` for the champion (normalized
feedback scores, recent prompts, corrections, SLO misses, cost) and asks each policy; it
holds the clock and passes `now`, so every policy is a plain function of data and testable
without Ray, MLflow or time. Three policies retrain (quality drop, prompt drift, enough new
labels); latency or cost over target only alerts, because a bigger fleet mix, not a new
model, fixes those (`tandem plan`). One more, when configured, distills: enough logged
teacher answers since the last distillation make a new student worth training
(`jobs/distill.py`).
Each policy has a cool-down, recorded in `TriggerState`, so that a condition that persists
while the retrained model is on its way does not fire again and again; the result's reason
is a sentence with the numbers, for the operator and for the new version's
`tandem.trigger` tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tandem.triggers.profile import DataProfile
from tandem.triggers.state import TriggerState, window_id

Action = Literal["retrain", "distill", "alert", "none"]


@dataclass(frozen=True)
class TriggerWindow:
    """What the retraining loop gathered about the champion for one evaluation.

    Attributes:
        model, model_version: the champion the window describes.
        scores: normalized scores ([-1, 1]) of its recent rated requests, oldest first.
        baseline_mean_score, baseline_negative_rate: the same measures over the champion's
            first rated requests (or its evaluation), what "worse" is measured against.
        prompts, profile: recent prompts, and the profile of its training prompts.
        corrections_since_training: corrections received since its training run.
        requests: requests answered in the window.
        slo_judged, slo_misses: those judged against latency targets, and how many missed
            them by measurement (the request log's `slo_met`, not the router's prediction).
        cost_per_request_usd: mean estimated cost of those requests.
        slo_miss_target, cost_target_usd: the highest acceptable miss fraction and cost.
        answers_since_distillation: answers with logged text since the last distillation.
    """

    model: str
    model_version: int | None = None
    scores: tuple[float, ...] = ()
    baseline_mean_score: float | None = None
    baseline_negative_rate: float | None = None
    prompts: tuple[str, ...] = ()
    profile: DataProfile | None = None
    corrections_since_training: int = 0
    requests: int = 0
    slo_judged: int = 0
    slo_misses: int = 0
    cost_per_request_usd: float | None = None
    slo_miss_target: float | None = None
    cost_target_usd: float | None = None
    answers_since_distillation: int = 0


@dataclass(frozen=True)
class TriggerResult:
    """One policy's verdict on one window."""

    name: str
    fired: bool
    action: Action
    reason: str
    window_id: str


class Trigger(Protocol):
    name: str

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult: ...


class TriggerConfig(BaseModel):
    """Settings every trigger has."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    cooldown_s: float = Field(6 * 3600.0, ge=0, description="No second fire within this many seconds.")
    window_s: float = Field(3600.0, gt=0, description="Length of a trigger window: at most one "
                            "retraining job per window.")


class QualityConfig(TriggerConfig):
    last_n: int = Field(50, gt=0, description="Judge the last N rated requests.")
    min_rated: int = Field(20, gt=0, description="Stay quiet with fewer rated requests than this.")
    negative_rate_rise: float = Field(0.20, gt=0, description="Fire when the share of negative scores "
                                      "rises this much (fraction) above the baseline.")
    mean_drop: float = Field(0.30, gt=0, description="Fire when the mean normalized score drops this "
                             "much below the baseline.")


class DriftConfig(TriggerConfig):
    psi_threshold: float = Field(0.2, gt=0, description="Fire when either PSI is above this.")
    min_requests: int = Field(200, gt=0, description="Stay quiet with fewer recent prompts than this.")


class NewLabelsConfig(TriggerConfig):
    min_corrections: int = Field(100, gt=0, description="Fire at this many corrections since the "
                                 "last training run.")


class DistillTriggerConfig(TriggerConfig):
    student_model: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="Registered name "
                               "of the student the distillation job trains.")
    config: str = Field("jobs/configs/distill-tiny.yaml", description="Distillation YAML.")
    overrides: list[str] = Field(default_factory=list, description="Extra --key=value "
                                 "arguments for jobs/distill.py.")
    min_answers: int = Field(1000, gt=0, description="Fire at this many logged answers of the "
                             "teacher since the last distillation.")


class LatencyCostConfig(TriggerConfig):
    min_requests: int = Field(100, gt=0, description="Stay quiet with fewer requests than this.")


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _decide(name: str, config: TriggerConfig, action: Action, state: TriggerState, now: float,
            problem: str | None, quiet: str) -> TriggerResult:
    """Fire for `problem` unless cooling down (and record the fire in `state`); else stay quiet."""
    window = window_id(name, now, config.window_s)
    if problem is None:
        return TriggerResult(name, False, "none", quiet, window)
    last = state.last_fired(name)
    if last is not None and now - last < config.cooldown_s:
        return TriggerResult(name, False, "none", f"{problem}; cooling down until "
                             f"{_stamp(last + config.cooldown_s)}", window)
    state.record_fire(name, now)
    return TriggerResult(name, True, action, problem, window)


class QualityTrigger:
    """Retrain when users rate the champion worse than its baseline."""

    name = "quality"

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult:
        config = self.config
        scores = window.scores[-config.last_n:]
        if len(scores) < config.min_rated:
            return _decide(self.name, config, "retrain", state, now, None,
                           f"only {len(scores)} rated requests (need {config.min_rated})")
        if window.baseline_negative_rate is None and window.baseline_mean_score is None:
            return _decide(self.name, config, "retrain", state, now, None,
                           "no baseline score to compare the champion with")
        findings, problems = [], []
        if window.baseline_negative_rate is not None:
            rate = sum(score < 0 for score in scores) / len(scores)
            rise = config.negative_rate_rise * 100
            finding = (f"negative feedback {rate:.0%} over last {len(scores)} rated vs baseline "
                       f"{window.baseline_negative_rate:.0%} (threshold +{rise:g} pts)")
            findings.append(finding)
            if rate - window.baseline_negative_rate >= config.negative_rate_rise - 1e-12:
                problems.append(finding)
        if window.baseline_mean_score is not None:
            mean = sum(scores) / len(scores)
            finding = (f"mean score {mean:+.2f} over last {len(scores)} rated vs baseline "
                       f"{window.baseline_mean_score:+.2f} (threshold -{config.mean_drop:g})")
            findings.append(finding)
            if window.baseline_mean_score - mean >= config.mean_drop - 1e-12:
                problems.append(finding)
        return _decide(self.name, config, "retrain", state, now, "; ".join(problems) or None,
                       "; ".join(findings))


class DriftTrigger:
    """Retrain when recent prompts no longer look like the training prompts."""

    name = "drift"

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = config or DriftConfig()

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult:
        config = self.config
        if window.profile is None:
            return _decide(self.name, config, "retrain", state, now, None,
                           "no training data profile to compare prompts with")
        if len(window.prompts) < config.min_requests:
            return _decide(self.name, config, "retrain", state, now, None,
                           f"only {len(window.prompts)} recent prompts (need {config.min_requests})")
        drift = window.profile.compare(window.prompts)
        finding = (f"prompt PSI length {drift['psi_length']:.2f}, tokens {drift['psi_tokens']:.2f} over "
                   f"{len(window.prompts)} requests vs training data (threshold {config.psi_threshold:g})")
        drifted = max(drift.values()) > config.psi_threshold
        return _decide(self.name, config, "retrain", state, now,
                       f"prompt drift: {finding}" if drifted else None, finding)


class NewLabelsTrigger:
    """Retrain when users have sent enough corrections to learn from."""

    name = "new_labels"

    def __init__(self, config: NewLabelsConfig | None = None) -> None:
        self.config = config or NewLabelsConfig()

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult:
        count, needed = window.corrections_since_training, self.config.min_corrections
        finding = f"{count} corrections since the last training run (threshold {needed})"
        return _decide(self.name, self.config, "retrain", state, now,
                       finding if count >= needed else None, finding)


class DistillTrigger:
    """Distill a new student once the teacher has answered enough since the last one."""

    name = "distill"

    def __init__(self, config: DistillTriggerConfig) -> None:
        self.config = config

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult:
        count, needed = window.answers_since_distillation, self.config.min_answers
        finding = (f"{count} logged answers since the last distillation into "
                   f"{self.config.student_model} (threshold {needed})")
        return _decide(self.name, self.config, "distill", state, now,
                       finding if count >= needed else None, finding)


class LatencyCostAlert:
    """Alert (never retrain) when SLO misses or cost per request exceed their targets."""

    name = "latency_cost"

    def __init__(self, config: LatencyCostConfig | None = None) -> None:
        self.config = config or LatencyCostConfig()

    def evaluate(self, window: TriggerWindow, state: TriggerState, now: float) -> TriggerResult:
        config = self.config
        if window.requests < config.min_requests:
            return _decide(self.name, config, "alert", state, now, None,
                           f"only {window.requests} requests (need {config.min_requests})")
        findings, problems = [], []
        if window.slo_miss_target is not None and window.slo_judged:
            rate = window.slo_misses / window.slo_judged
            finding = (f"SLO misses {rate:.1%} of {window.slo_judged} requests judged vs target "
                       f"{window.slo_miss_target:.1%}")
            findings.append(finding)
            if rate > window.slo_miss_target:
                problems.append(finding)
        if window.cost_target_usd is not None and window.cost_per_request_usd is not None:
            finding = (f"cost ${window.cost_per_request_usd:.6f} per request vs target "
                       f"${window.cost_target_usd:.6f}")
            findings.append(finding)
            if window.cost_per_request_usd > window.cost_target_usd:
                problems.append(finding)
        problem = "; ".join(problems) + "; run `tandem plan` to size the GPU mix" if problems else None
        return _decide(self.name, config, "alert", state, now, problem,
                       "; ".join(findings) or "no latency or cost target set")

"""What the retraining loop watches, how often, and what a retraining job trains on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tandem.config import StrictConfig, load_config
from tandem.rollout.verdicts import RolloutConfig
from tandem.triggers.policies import (
    DistillTriggerConfig,
    DriftConfig,
    LatencyCostConfig,
    NewLabelsConfig,
    QualityConfig,
)


class WatchConfig(StrictConfig):
    """What `tandem watch` watches, how often, and what a retraining job trains on."""

    model: str = Field("tandem-tiny", pattern=r"^[A-Za-z0-9._-]+$",
                       description="Registered model whose champion is watched.")
    interval_s: float = Field(60.0, gt=0, allow_inf_nan=False,
                              description="Seconds between evaluations.")
    window_s: float = Field(3600.0, gt=0, allow_inf_nan=False,
                            description="How far back requests and feedback count.")
    feedback_scale: Literal["-1..1", "1..5"] = Field(
        "-1..1", description="Score scale of the feedback; the Serve config's telemetry.feedback_scale.")
    slo_miss_target: float | None = Field(0.05, ge=0, le=1, description="Highest acceptable "
                                          "share of requests that miss their SLO (None: no target).")
    cost_target_usd: float | None = Field(None, gt=0, description="Highest acceptable mean cost "
                                          "per request (None: no target).")
    finetune_config: str = Field("jobs/configs/tiny.yaml", description="Fine-tuning YAML the "
                                 "retraining job starts from; its train_data is what gets sampled.")
    finetune_overrides: list[str] = Field(default_factory=list, description="Extra "
                                          "--key=value overrides of the retraining job.")
    retrain_sample: int = Field(400, ge=0, description="Original training rows mixed into "
                                "the corrections.")
    correction_repeats: int = Field(1, ge=1, description="Times each correction appears in "
                                    "the retraining set (upsamples the new data).")
    validation_share: float = Field(0.1, ge=0, lt=1, description="Share of corrected "
                                    "prompts kept out of retraining to pick its checkpoint "
                                    "(beside the rollout's feedback_holdout_share).")
    seed: int = Field(0, description="Seed of the training-row sample.")
    profile: str | None = Field(None, description="DataProfile JSON of the champion's training "
                                "prompts; default: built from the fine-tuning config's train_data.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality trigger.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift trigger.")
    new_labels: NewLabelsConfig = Field(default_factory=NewLabelsConfig,
                                        description="New-labels trigger.")
    latency_cost: LatencyCostConfig = Field(default_factory=LatencyCostConfig,
                                            description="Latency/cost alert.")
    distill: DistillTriggerConfig | None = Field(
        None, description="Distill the champion into `student_model` (jobs/distill.py) every "
        "`min_answers` logged answers; off when absent.")
    retention_days: float = Field(30.0, gt=0, allow_inf_nan=False, description="Days the "
                                  "request log and feedback are kept; the loop deletes older "
                                  "hours and compacts closed ones (tandem.telemetry.compaction).")
    trace_share: float = Field(0.05, ge=0, le=1, description="Share of unrated requests "
                               "exported to MLflow as traces (rated ones always are).")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Gates a retrained "
                                   "version passes on its way to champion (tandem.rollout).")

    @model_validator(mode="after")
    def _corrections_left_to_train_on(self) -> WatchConfig:
        kept_out = self.validation_share + self.rollout.feedback_holdout_share
        if kept_out >= 1:
            raise ValueError(f"validation_share + rollout.feedback_holdout_share is {kept_out:g}: "
                             "no correction would be left to retrain on (keep it under 1)")
        return self


def load_watch_config(path: str | Path | None, overrides: list[str] | None = None, *,
                      model: str | None = None, interval_s: float | None = None) -> WatchConfig:
    """The watch config from the YAML at `path` (defaults when None), then `--key=value`
    overrides, then `model` and `interval_s` when given (each wins over what precedes it)."""
    overrides = list(overrides or [])
    if model is not None:
        overrides.append(f"--model={json.dumps(model)}")
    if interval_s is not None:
        overrides.append(f"--interval_s={interval_s!r}")
    return load_config(WatchConfig, path, overrides)

"""Distillation: a smaller student trained on the teacher's production answers.

`jobs/distill.py` runs `run_distill`: it pins the teacher's version, builds the
distillation set from the request log (`tandem.train.distill_data`), makes the student's
starting point from the teacher (its config with fewer layers or narrower widths, the
teacher's tokenizer, and the teacher's weights wherever the shapes still match: its
embeddings and first layers when only depth shrinks), and fine-tunes it with the same Ray
Train job as any fine-tune (`run_finetune`). The student registers as its own model with
`tandem.teacher_version`, `tandem.traffic_window` and the dataset fingerprint. Then
student and teacher are scored per tier on the held-out live prompts
(`tandem.train.distill_data.quality_rows`), and both versions get `tandem.quality.<tier>`:
what the router's quality floors are judged on (`tandem.routing.models`).

Two signals: sequence-level (the student learns the teacher's answers as text) and, with
`logit_weight` > 0, logit distillation: the teacher runs in every training worker and the
loss adds the KL divergence to its token distributions on the same rows
(`tandem.train.steps.distillation_loss`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveFloat, PositiveInt

from tandem.config import StrictConfig
from tandem.errors import UserError
from tandem.settings import Settings

SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads")


class StudentShape(StrictConfig):
    """How the student differs from the teacher (fields of its transformers config)."""

    num_hidden_layers: PositiveInt | None = Field(None, description="Fewer layers.")
    hidden_size: PositiveInt | None = Field(None, description="A narrower model.")
    intermediate_size: PositiveInt | None = Field(None, description="A narrower MLP.")
    num_attention_heads: PositiveInt | None = Field(None, description="Fewer heads.")
    num_key_value_heads: PositiveInt | None = Field(None, description="Fewer KV heads.")
    base_model: str | None = Field(
        None, description="Start from this model instead (models:/NAME@ALIAS or a local "
        "directory); its tokenizer must be the teacher's.")


class DistillConfig(StrictConfig):
    """One distillation run (`jobs/configs/distill-*.yaml`)."""

    teacher: str = Field(pattern=r"^models:/", description="The teacher, models:/NAME@ALIAS.")
    student_model: str = Field(pattern=r"^[A-Za-z0-9._-]+$",
                               description="Registered name of the student.")
    student: StudentShape = Field(default_factory=lambda: StudentShape(num_hidden_layers=1),
                                  description="The student's shape, from the teacher's.")
    window_hours: PositiveFloat = Field(168.0, description="Traffic window: the teacher's "
                                        "answers of the last N hours.")
    train_sample: int = Field(400, ge=0, description="Original training rows mixed in.")
    seed: int = Field(0, description="Sampling and shuffling seed.")
    logit_weight: float = Field(0.5, ge=0, le=1, description="Share of the loss that is the KL "
                                "divergence to the teacher's token distributions (the teacher "
                                "runs in the job); 0: sequence-level distillation only.")
    temperature: PositiveFloat = Field(2.0, description="Softmax temperature of the logit loss.")
    quality_holdout: float = Field(0.2, ge=0, lt=1, description="Share of live prompts kept "
                                   "out of training to score student and teacher per tier.")
    quality_min_rows: PositiveInt = Field(5, description="A tier's quality is recorded only "
                                          "from at least this many held-out prompts.")
    finetune: dict[str, Any] = Field(
        default_factory=dict, description="Fields of the fine-tuning config (epochs, "
        "learning_rate, num_workers, ...); registered_model, base_model, train_data and the "
        "lineage fields are set by the distillation.")


def tokenizer_digest(model_dir: Path) -> str:
    """What makes two tokenizers the same: the vocabulary, merges and special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    canonical = json.dumps({"vocab": tokenizer.get_vocab(),
                            "special": tokenizer.all_special_tokens}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_tokenizer(student_dir: Path, teacher_dir: Path) -> None:
    """UserError unless the student tokenizes exactly as the teacher (its answers are the
    teacher's tokens; another vocabulary would learn other text)."""
    if tokenizer_digest(student_dir) != tokenizer_digest(teacher_dir):
        raise UserError(f"the student's tokenizer ({student_dir}) differs from the teacher's "
                        f"({teacher_dir}): a student must share its teacher's tokenizer")


def check_vocabulary(student_dir: Path, teacher_dir: Path) -> None:
    """Logit distillation compares distributions over one vocabulary: the embedding sizes
    must match (UserError naming both otherwise)."""
    sizes = [json.loads((path / "config.json").read_text()).get("vocab_size")
             for path in (student_dir, teacher_dir)]
    if sizes[0] != sizes[1]:
        raise UserError(f"logit distillation needs one vocabulary: {student_dir} has "
                        f"{sizes[0]} tokens, the teacher {teacher_dir} {sizes[1]}; set "
                        "logit_weight: 0 for sequence-level distillation only")


def build_student(teacher_dir: Path, shape: StudentShape, out_dir: Path, seed: int) -> Path:
    """The student's starting point in `out_dir` (reused when already built): the teacher's
    config with `shape`'s fields, the teacher's tokenizer, and the teacher's weights for
    every parameter whose shape still matches (the rest random, seeded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    changes = {name: getattr(shape, name) for name in SHAPE_FIELDS
               if getattr(shape, name) is not None}
    config = AutoConfig.from_pretrained(teacher_dir)
    for name, value in changes.items():
        setattr(config, name, value)
    key = hashlib.sha256(json.dumps([str(teacher_dir), changes, seed]).encode()).hexdigest()
    target = out_dir / key[:12]
    if (target / "config.json").exists():
        return target
    torch.manual_seed(seed)
    student = AutoModelForCausalLM.from_config(config)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).state_dict()
    own = student.state_dict()
    kept = {name: value for name, value in teacher.items()
            if name in own and own[name].shape == value.shape}
    student.load_state_dict(kept, strict=False)
    staging = out_dir / f".{key[:12]}.building"
    student.save_pretrained(staging)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(staging)
    staging.rename(target)
    return target


DISTILL_COLUMNS = ("request_id", "model", "model_version", "status", "tier", "prompt", "response")


class TeacherAnswers:
    """The rows of a request-log table the teacher answered (200): what a read task keeps."""

    def __init__(self, teacher: str) -> None:
        self.teacher = teacher

    def __call__(self, table):
        import pyarrow.compute as pc

        return pc.and_(pc.equal(table["model"], self.teacher), pc.equal(table["status"], 200))


def run_distill(config: DistillConfig, settings: Settings,
                log: Callable[[str], None] = print):
    """Distill `config.teacher` into a registered student; returns the FinetuneResult."""
    from pydantic import ValidationError

    from tandem.config import describe_validation_error
    from tandem.registry import download_model, resolve_version
    from tandem.telemetry.dataset import read_kept
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.schema import as_utc
    from tandem.train.config import FinetuneConfig
    from tandem.train.distill_data import build_distill_rows, quality_rows
    from tandem.train.run import (
        join_ray,
        resolve_base_model_dir,
        resolve_data_paths,
        run_finetune,
    )
    from tandem.triggers.retrain_data import read_jsonl, write_jsonl

    teacher, version = resolve_version(config.teacher, settings.mlflow_url)
    teacher_dir = download_model(f"models:/{teacher}/{version}",
                                 settings.models_dir / "registry", settings.mlflow_url)[0]
    # a student that cannot learn from this teacher is refused before any data is read
    if config.student.base_model:
        student_dir = Path(resolve_base_model_dir(config.student.base_model, settings))
    else:
        student_dir = build_student(teacher_dir, config.student,
                                    settings.models_dir / "base" / "students", config.seed)
    check_tokenizer(student_dir, teacher_dir)
    if config.logit_weight:
        check_vocabulary(student_dir, teacher_dir)
    end = time.time()
    start = end - config.window_hours * 3600
    telemetry = settings.home / "telemetry"
    train_rows = [row for path in resolve_data_paths(["builtin:train"], settings)
                  for row in read_jsonl(path)]
    # the teacher's answers in the window, kept by Ray read tasks over the log's files (a
    # window can outgrow the driver); the feedback whole (a correction counts whenever it
    # came, and carries its request's prompt)
    join_ray(settings)
    requests = read_kept(telemetry, "requests", since=as_utc(start), columns=DISTILL_COLUMNS,
                         keep=TeacherAnswers(teacher))
    feedback = read_feedback(telemetry)
    rows = build_distill_rows(requests, feedback, train_rows, teacher=teacher, start=start,
                              end=end, sample=config.train_sample, seed=config.seed,
                              holdout_share=config.quality_holdout)
    scoring = {tier: tier_rows for tier, tier_rows in quality_rows(
        requests, feedback, teacher=teacher, start=start, end=end,
        holdout_share=config.quality_holdout).items() if len(tier_rows) >= config.quality_min_rows}
    window = f"{time.strftime('%Y-%m-%dT%H:%M', time.gmtime(start))}/" \
             f"{time.strftime('%Y-%m-%dT%H:%M', time.gmtime(end))}"
    data = write_jsonl(rows, settings.home / "datasets" / "distill" /
                       f"{config.student_model}-{int(end)}.jsonl")
    log(f"distilling {teacher} v{version} into {config.student_model}: {len(rows)} rows "
        f"({window}); " + (f"logit distillation at weight {config.logit_weight:g}, "
                           f"temperature {config.temperature:g}" if config.logit_weight
                           else "sequence-level only"))
    try:
        finetune = FinetuneConfig.model_validate({
            **config.finetune, "registered_model": config.student_model,
            "base_model": str(student_dir), "train_data": [str(data)], "mode": "full",
            "teacher_version": f"models:/{teacher}/{version}", "traffic_window": window,
            "distill_teacher": str(teacher_dir) if config.logit_weight else "",
            "distill_weight": config.logit_weight, "distill_temperature": config.temperature})
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "distillation finetune")) from None
    result = run_finetune(finetune, settings, log)
    if result.version is not None:
        record_quality(scoring, [(teacher, version, teacher_dir),
                                 (config.student_model, result.version, None)], settings, log,
                       finetune.prompt_format, finetune.use_gpu)
    return result


def record_quality(rows_by_tier: dict[str, list[dict]], versions: list[tuple[str, int, Any]],
                   settings: Settings, log: Callable[[str], None], prompt_format: str = "text",
                   use_gpu: bool = False) -> None:
    """Score each (name, version, local dir or None: download it) per tier, on a vLLM engine
    in a Ray task (`tandem.rollout.evaluate`), and tag the version with `tandem.quality.<tier>`
    and the held-out figures the watcher pools rated answers with (`tandem.rollout.quality`);
    a tier without rows is left unmeasured."""
    from tandem.registry import download_model, set_version_tags
    from tandem.rollout.engine import Candidate
    from tandem.rollout.evaluate import quality_per_tier
    from tandem.rollout.quality import heldout_tags

    if not rows_by_tier:
        log("quality per tier not recorded: too few held-out live prompts with a ground truth")
        return
    candidates = [Candidate(str(model_dir or download_model(
        f"models:/{name}/{version}", settings.models_dir / "registry", settings.mlflow_url)[0]))
        for name, version, model_dir in versions]
    scored = quality_per_tier(candidates, rows_by_tier, prompt_format, use_gpu)
    for (name, version, _), scores in zip(versions, scored, strict=True):
        set_version_tags(name, version, heldout_tags(scores, {
            tier: len(rows_by_tier[tier]) for tier in scores}), settings.mlflow_url)
        log(f"{name} v{version} exact match per tier: " + ", ".join(
            f"{tier} {score:.2f} ({len(rows_by_tier[tier])} prompts)"
            for tier, score in sorted(scores.items())))

"""The demo of the flywheel's second half on the local stack: what `make demo-distill` shows.

teacher champion serves both local pools -> simulated users send task prompts in three
tiers (training prompts and unseen ones) and rate the answers, correcting the wrong ones
-> evaluation prompts nobody trained on are asked in every tier (the teacher-only exact
match, as the client sees it) and the capacity of the teacher-only deployment is measured
-> `jobs/distill.py` (a Ray job; skipped when the student's champion was distilled from
this teacher version already) distills a student from the logged answers and
scores both per tier on held-out live prompts -> the student serves the `cheap` pool under
the teacher's name, with each tier's quality floor set 5 points below the teacher's
measured exact match (the interactive tier: the teacher's own) -> the same evaluation
prompts in the same tiers show which model answered and how well -> the capacity of the
routed deployment is measured the same way.

Cost is rent: the local pools rent for the same $/hour either way, so rent per 1k
requests is that rent over the highest request rate the pools sustained while every tier
met its latency targets (requests offered at rising rates, open loop, until a tier falls
below `attainment`). Every figure in the closing table is measured here; none is a prediction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field, PositiveFloat, field_validator

from tandem.config import StrictConfig
from tandem.errors import UserError
from tandem.settings import Settings

Log = Callable[[str], None]
TIERS = ("interactive", "standard", "batch")
FLOOR_MARGIN = 0.05  # a student within 5 points of the teacher may take standard and batch


class DistillStoryConfig(StrictConfig):
    """How long each act of the distillation story runs."""

    model: str = "tandem-tiny"
    student_model: str = "tandem-tiny-student"
    import_model: str = Field("", description="A packaged base model to import first "
                              "(`tandem models import`), e.g. smollm2; empty: none.")
    chat: bool = Field(False, description="Users ask through /v1/chat/completions (the "
                       "model's chat template) instead of /v1/completions.")
    finetune_config: str = "jobs/configs/tiny.yaml"
    distill_config: str = "jobs/configs/distill-tiny.yaml"
    distill_overrides: list[str] = Field(default_factory=list)
    serve_config: str = "apps/serve.local.yaml"
    traffic_requests: int = Field(600, ge=3, description="Rated task prompts sent to the "
                                  "teacher: training prompts, then the first half of the "
                                  "holdout split.")
    eval_requests: int = Field(100, ge=3, description="Prompts of the holdout's second half "
                               "asked of the teacher alone, then of the routed mix.")
    clients: int = Field(4, ge=1, description="Concurrent simulated users.")
    load_rates: list[PositiveFloat] = Field(
        default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0], min_length=1,
        description="Requests per second offered at each capacity step (open loop, the "
        "tiers in turn), lowest first.")
    load_seconds: float = Field(15.0, gt=0, description="Length of one capacity step.")
    load_max_tokens: int = Field(8, ge=1, description="Tokens per capacity request.")
    attainment: float = Field(0.95, gt=0, le=1, description="Share of each tier's requests "
                              "that must meet its targets for a step to count.")

    @field_validator("load_rates")
    @classmethod
    def _rising(cls, rates: list[float]) -> list[float]:
        """The steps stop at the first miss, so a lower rate after it would never run."""
        if rates != sorted(set(rates)):
            raise ValueError(f"load_rates must rise step by step, got {rates}")
        return rates


@dataclass
class Capacity:
    """The highest rate that met every tier's targets, and what each step measured."""

    requests_per_s: float
    rent_per_hour: float
    steps: list[str] = field(default_factory=list)

    @property
    def usd_per_1k(self) -> float | None:
        """None when no step met every tier's targets."""
        if not self.requests_per_s:
            return None
        return self.rent_per_hour / (self.requests_per_s * 3600) * 1000


@dataclass
class DistillStoryResult:
    teacher_version: int
    student_version: int
    sizes: dict[str, int]  # model -> parameters
    quality: dict[str, dict[str, float]]  # model -> tier -> exact match (held-out live prompts)
    floors: dict[str, float]
    teacher_only_em: dict[str, float]  # tier -> exact match of the teacher alone
    live: dict[str, dict[str, tuple[int, int]]]  # tier -> model -> (right, answered), routed
    teacher_only: Capacity
    routed: Capacity


def measure_capacity(settings: Settings, config: DistillStoryConfig, routing, rent: float,
                     log: Log) -> Capacity:
    """Offer requests at each of `load_rates` in turn (open loop, the tiers in turn) until a
    tier misses its targets; the highest rate whose every tier met them (0: none did). One
    step at the lowest rate runs first and is discarded, so that both deployments are
    measured with warm engines and a router that has seen their latency."""
    from tandem.auth import client_key
    from tandem.serve.loadgen import Stream, run_open_load, summarize

    streams = [Stream(tier, config.load_max_tokens, 1) for tier in TIERS]

    def step(rate: float, seed: int) -> dict[str, dict[str, float]]:
        return summarize(run_open_load(settings.api_url, streams, rate, config.load_seconds,
                                       model=config.model, api_key=client_key(settings.home),
                                       seed=seed), routing)

    step(config.load_rates[0], seed=len(config.load_rates))  # warm-up
    best = Capacity(0.0, rent)
    for seed, rate in enumerate(config.load_rates):
        by_tier = step(rate, seed)
        worst = min(row["attainment"] for row in by_tier.values())
        best.steps.append(f"{rate:g} req/s: " + ", ".join(
            f"{tier} {by_tier[tier]['attainment']:.0%}" for tier in TIERS if tier in by_tier))
        log(f"   {best.steps[-1]}")
        if worst < config.attainment:
            break
        best.requests_per_s = rate
    return best


def _parameters(model_dir) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())


def run_distill_story(config: DistillStoryConfig, settings: Settings,
                      log: Log = print) -> DistillStoryResult:
    """Every act in order; raises `UserError` when one does not end the way the story needs."""
    from tandem.demos.loop import Users, finish_job, import_in_a_subprocess, task_rows, with_clock
    from tandem.ray_jobs import submit_job
    from tandem.registry import CHAMPION, alias_version, download_model, version_tags
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy
    from tandem.serve.students import quality_of

    log = with_clock(log)
    url, model, student = settings.mlflow_url, config.model, config.student_model
    if config.import_model:
        log(f"== 0/6 import the base model {config.import_model} (converted once, registered)")
        import_in_a_subprocess(config.import_model, log)
    log(f"== 1/6 the teacher: {model}'s champion (fine-tuned as a Ray job if missing)")
    if alias_version(model, CHAMPION, url) is None:
        finish_job(settings, submit_job(settings, [
            "python", "jobs/finetune.py", "--config", config.finetune_config]), log)
    teacher_version = alias_version(model, CHAMPION, url)
    teacher_only = load_serve_config(config.serve_config, {"model": f"models:/{model}@champion"})
    deploy(teacher_only, settings, log=log)
    rent = sum(pool.price_per_hour for pool in teacher_only.pools.values())

    log(f"== 2/6 {config.traffic_requests} rated requests in three tiers reach the teacher")
    users = Users(settings, model, config.clients, config.chat)
    holdout = task_rows(settings, "holdout")
    unseen, evaluation = holdout[: len(holdout) // 2], holdout[len(holdout) // 2:]
    evaluation = evaluation[: config.eval_requests]
    train = task_rows(settings, "train")
    traffic = (train[: max(0, config.traffic_requests - len(unseen))] + unseen)[
        : config.traffic_requests]

    def ask_and_rate(item: tuple[int, dict]) -> bool:
        index, row = item
        return users.ask_and_rate(row, TIERS[index % len(TIERS)])[0]

    rights = users.each(ask_and_rate, list(enumerate(traffic)))
    log(f"   the teacher answered {sum(rights)} of {len(rights)} right")

    def ask_evaluation(item: tuple[int, dict]) -> tuple[str, str, bool]:
        index, row = item
        tier = TIERS[index % len(TIERS)]
        right, reply = users.answer(row, tier)
        return tier, reply.headers.get("x-tandem-model", f"models:/{model}/").split("/")[1], right

    alone = users.each(ask_evaluation, list(enumerate(evaluation)))
    teacher_only_em = {tier: sum(right for t, _, right in alone if t == tier)
                       / max(1, sum(t == tier for t, _, _ in alone)) for tier in TIERS}
    log(f"   teacher alone on {len(evaluation)} evaluation prompts: " + ", ".join(
        f"{tier} {teacher_only_em[tier]:.2f}" for tier in TIERS))
    time.sleep(3)  # the ingress flushes the request log every 2 s
    log("   capacity of the teacher-only deployment:")
    teacher_capacity = measure_capacity(settings, config, teacher_only.routing_config(), rent,
                                        log)

    student_version = alias_version(student, CHAMPION, url)
    teacher_uri = f"models:/{model}/{teacher_version}"
    if student_version is not None and version_tags(student, student_version, url).get(
            "tandem.teacher_version") == teacher_uri:
        log(f"== 3/6 {student} v{student_version} was distilled from {teacher_uri}: kept")
    else:
        log(f"== 3/6 distill {model} v{teacher_version} into {student} (a Ray job)")
        finish_job(settings, submit_job(settings, [
            "python", "jobs/distill.py", "--config", config.distill_config,
            f"--teacher=models:/{model}@champion", f"--student_model={student}",
            *config.distill_overrides]), log)
        student_version = alias_version(student, CHAMPION, url)
    quality = {name: quality_of(version_tags(name, version, url))
               for name, version in ((model, teacher_version), (student, student_version))}
    if set(quality[model]) != set(TIERS):
        raise UserError(f"the distillation measured {model}'s quality for "
                        f"{sorted(quality[model])} only; send more traffic")
    floors = {tier: round(max(0.0, quality[model][tier] - FLOOR_MARGIN), 4)
              for tier in ("standard", "batch")}
    floors["interactive"] = quality[model]["interactive"]
    for name in (model, student):
        log(f"   {name}: exact match per tier on held-out live prompts "
            + ", ".join(f"{tier} {quality[name].get(tier, float('nan')):.2f}" for tier in TIERS))

    log(f"== 4/6 {student} serves the cheap pool under {model}'s name; floors "
        + ", ".join(f"{tier} {floors[tier]:.2f}" for tier in TIERS))
    tiers = teacher_only.routing_config().tiers
    routed = load_serve_config(config.serve_config, {
        "model": f"models:/{model}@champion",
        "students": [{"model": f"models:/{student}@champion", "pools": ["cheap"]}],
        "routing": {"tiers": {tier: {**tiers[tier].model_dump(), "min_quality": floors[tier]}
                              for tier in TIERS}, "stale_half_life_s": 30.0}})
    deploy(routed, settings, log=log)

    log(f"== 5/6 the {len(evaluation)} evaluation prompts, same tiers, through the routed mix")
    live: dict[str, dict[str, list[int]]] = {tier: {} for tier in TIERS}
    for tier, answered_by, right in users.each(ask_evaluation, list(enumerate(evaluation))):
        counts = live[tier].setdefault(answered_by, [0, 0])
        counts[0] += right
        counts[1] += 1
    log("   capacity of the routed deployment:")
    routed_capacity = measure_capacity(settings, config, routed.routing_config(), rent, log)

    log("== 6/6 sizes")
    sizes = {}
    for name, version in ((model, teacher_version), (student, student_version)):
        model_dir, _ = download_model(f"models:/{name}/{version}",
                                      settings.models_dir / "registry", url)
        sizes[name] = _parameters(model_dir)
    return DistillStoryResult(
        teacher_version, student_version, sizes, quality, floors, teacher_only_em,
        {tier: {name: tuple(counts) for name, counts in by.items()} for tier, by in live.items()},
        teacher_capacity, routed_capacity)


def summary_lines(result: DistillStoryResult, config: DistillStoryConfig) -> list[str]:
    """The closing table: sizes, exact match per tier, the student's share, rent per 1k."""
    teacher, student = config.model, config.student_model
    lines = [f"{'model':<24} {'parameters':>10}  " + "  ".join(f"{t:>11}" for t in TIERS)]
    for name in (teacher, student):
        lines.append(f"{name:<24} {result.sizes[name]:>10,}  " + "  ".join(
            f"{result.quality[name].get(tier, float('nan')):>11.2f}" for tier in TIERS))
    lines += ["(exact match on held-out live prompts, scored by the distillation job)", "",
              "evaluation prompts nobody trained on, through the API:",
              f"{'tier':<12} {'floor':>5}  {'student share':>13}  {'routed EM':>9}  "
              f"{'teacher-only EM':>15}  {'student EM':>10}"]
    for tier in TIERS:
        by = result.live[tier]
        right = sum(hits for hits, _ in by.values())
        answered = sum(total for _, total in by.values())
        right_s, total_s = by.get(student, (0, 0))
        lines.append(f"{tier:<12} {result.floors[tier]:>5.2f}  "
                     f"{total_s / max(1, answered):>13.0%}  {right / max(1, answered):>9.2f}  "
                     f"{result.teacher_only_em[tier]:>15.2f}  "
                     f"{(f'{right_s / total_s:.2f}' if total_s else '-'):>10}")
    lines += ["", "rent per 1k requests (rent $/h over the highest rate meeting every tier):"]
    for label, capacity in (("teacher-only", result.teacher_only), ("routed", result.routed)):
        if capacity.usd_per_1k is None:
            lines.append(f"  {label:<13} ${capacity.rent_per_hour:.2f}/h: no step met every "
                         f"tier's targets ({'; '.join(capacity.steps)})")
        else:
            lines.append(f"  {label:<13} ${capacity.rent_per_hour:.2f}/h at "
                         f"{capacity.requests_per_s:5.1f} req/s = ${capacity.usd_per_1k:.6f}")
    if result.teacher_only.usd_per_1k and result.routed.usd_per_1k:
        saved = 1 - result.routed.usd_per_1k / result.teacher_only.usd_per_1k
        lines.append(f"  routed vs teacher-only: {saved:+.1%} "
                     f"({'cheaper' if saved > 0 else 'not cheaper'})")
    return lines

"""Each piece of the retraining loop wired to the real stores.

The watcher (`tandem.triggers`) reads the request log and feedback under
`$TANDEM_HOME/telemetry`, the champion and the time of the newest training run from MLflow,
keeps its durable state in `$TANDEM_HOME/triggers/<model>.json` (so a restarted loop does
not fire twice in one window), and submits `jobs/finetune.py` through Ray's Jobs API with
the trigger, its window and the parent version (the job fine-tunes
`models:/<model>/<champion>`, which `run_finetune` records as `tandem.parent_version`).
The retraining set is written to `$TANDEM_HOME/datasets/retrain/<submission id>.jsonl`
before the job is submitted. The rollout (`tandem.rollout`) takes a retrained challenger
through offline evaluation, a canary on live traffic, promotion or rollback, over the
registry and the Serve deployment; the trace export (`tandem.telemetry.traces`) sends
sampled and rated requests to MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

    from tandem.rollout.controller import Rollout
    from tandem.rollout.engine import Candidate
    from tandem.settings import Settings
    from tandem.telemetry.traces import TraceExport
    from tandem.train.config import FinetuneConfig
    from tandem.triggers.evaluator import TriggerEvaluator
    from tandem.triggers.policies import TriggerResult, TriggerWindow
    from tandem.watch.config import WatchConfig
    from tandem.watch.tail import TelemetryTail

FINETUNE_ENTRYPOINT = "jobs/finetune.py"
LIVE_COLUMNS = ("request_id", "model", "model_version", "status")  # what a canary is judged on
# what a correction is made a training row from (its request's prompt copied at post time)
CORRECTION_COLUMNS = ("feedback_id", "request_id", "score", "correction", "model",
                      "model_version", "prompt", "tenant")
DISTILL_ENTRYPOINT = "jobs/distill.py"


def retrain_overrides(model: str, data: Path, result: TriggerResult,
                      parent: int | None, adapter: bool = False,
                      eval_data: list[str] | None = None) -> list[str]:
    """`jobs/finetune.py` overrides that train `model` on `data`, starting from version
    `parent` when there is one, with the trigger's lineage, scoring its checkpoints on
    `eval_data` when given. An `adapter` keeps its config's base and continues the parent
    adapter."""
    overrides = [f"--registered_model={model}", f"--train_data={json.dumps([str(data)])}",
                 f"--trigger={json.dumps(f'{result.name}: {result.reason}')}",
                 f"--trigger_window={json.dumps(result.window_id)}"]
    if eval_data is not None:
        overrides.append(f"--eval_data={json.dumps(eval_data)}")
    if parent is not None:
        start = "lora.init_from" if adapter else "base_model"
        overrides.append(f"--{start}=models:/{model}/{parent}")
    return overrides


def _training_rows(paths: list[Path], per_file: int | None = None) -> list[dict]:
    """The rows of example files, the first `per_file` of each when given."""
    import pyarrow.parquet as pq

    from tandem.data.loader import validate_examples_file
    from tandem.triggers.retrain_data import read_jsonl

    rows: list[dict] = []
    for path in paths:
        validate_examples_file(path)
        rows += (read_jsonl(path) if path.suffix == ".jsonl" else
                 pq.read_table(path, columns=["prompt", "completion"]).to_pylist())[:per_file]
    return rows


def _retraining_config(config: WatchConfig) -> FinetuneConfig:
    """The fine-tuning config a retraining job runs: its YAML plus the watch's overrides."""
    from tandem.config import load_config
    from tandem.train.config import FinetuneConfig

    return load_config(FinetuneConfig, config.finetune_config, config.finetune_overrides)


def _registry_facts(model: str, tracking_uri: str) -> tuple[int | None, float | None]:
    """`model`'s champion version and the creation time of its newest version (POSIX
    seconds), each None when there is none; `UserError` when MLflow does not answer."""
    from tandem.registry import CHAMPION, alias_version

    try:
        return alias_version(model, CHAMPION, tracking_uri), _newest_version_time(model,
                                                                                  tracking_uri)
    except Exception as error:  # MLflow raises many types for "server unreachable"
        raise UserError(f"cannot read {model} from MLflow at {tracking_uri} "
                        f"({type(error).__name__}); start the stack with `tandem up`") from None


def _newest_version_time(model: str, tracking_uri: str) -> float | None:
    """When `model`'s newest version was created (POSIX seconds); None without versions."""
    from tandem.registry import mlflow_client

    versions = mlflow_client(tracking_uri).search_model_versions(f"name='{model}'")
    return max((mv.creation_timestamp / 1000 for mv in versions), default=None)


def distill_entrypoint(config: WatchConfig) -> list[str]:
    """The distillation job the distill trigger submits: the champion into the student."""
    distill = config.distill
    return ["python", DISTILL_ENTRYPOINT, "--config", distill.config,
            f"--teacher=models:/{config.model}@champion",
            f"--student_model={distill.student_model}", *distill.overrides]


def _candidate(model: str, version: int, settings: Settings) -> Candidate:
    """`model` at `version` as the offline gate's engine loads it: its local directory, and
    its base's when it is an adapter."""
    from tandem.registry import ADAPTER_BASE_TAG, download_model, is_adapter_dir, version_tags
    from tandem.rollout.engine import Candidate

    cache, url = settings.models_dir / "registry", settings.mlflow_url
    model_dir = download_model(f"models:/{model}/{version}", cache, url)[0]
    if not is_adapter_dir(model_dir):
        return Candidate(str(model_dir))
    base = version_tags(model, version, url)[ADAPTER_BASE_TAG]
    return Candidate(str(model_dir), str(download_model(base, cache, url)[0]))


def build_tail(config: WatchConfig, settings: Settings, now: float) -> TelemetryTail:
    """`config.model`'s telemetry as the loop reads it, state in
    `$TANDEM_HOME/watch/<model>.telemetry.json`."""
    from tandem.watch.tail import TelemetryTail

    return TelemetryTail(settings.home / "telemetry", config.model,
                         settings.home / "watch" / f"{config.model}.telemetry.json",
                         window_s=config.window_s, last_n=config.quality.last_n, now=now)


def trigger_state_path(config: WatchConfig, settings: Settings) -> Path:
    """Where the watcher keeps `config.model`'s fire times and submitted jobs."""
    return settings.home / "triggers" / f"{config.model}.json"


def build_watcher(config: WatchConfig, settings: Settings, tail: TelemetryTail) -> TriggerEvaluator:
    """A `TriggerEvaluator` over `tail` (what is new in `settings.home`'s telemetry) that
    submits `jobs/finetune.py`."""
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.window import rated_records
    from tandem.train.run import resolve_data_paths
    from tandem.triggers.evaluator import TriggerEvaluator
    from tandem.triggers.gather import gather_window
    from tandem.triggers.policies import (
        DistillTrigger,
        DriftTrigger,
        LatencyCostAlert,
        NewLabelsTrigger,
        QualityTrigger,
    )
    from tandem.triggers.profile import DataProfile
    from tandem.triggers.retrain_data import build_retrain_rows, validation_rows, write_jsonl
    from tandem.triggers.state import TriggerState

    finetune = _retraining_config(config)
    train_rows = _training_rows(resolve_data_paths(finetune.train_data, settings))
    profile = (DataProfile.load(config.profile) if config.profile
               else DataProfile.build([row["prompt"] for row in train_rows]))
    telemetry = settings.home / "telemetry"

    def gather(now: float) -> TriggerWindow:
        champion, last_training = _registry_facts(config.model, settings.mlflow_url)
        last_distillation = None
        if config.distill is not None:
            try:
                last_distillation = _newest_version_time(config.distill.student_model,
                                                         settings.mlflow_url)
            except Exception as error:  # MLflow raises many types for "server unreachable"
                raise UserError(f"cannot read {config.distill.student_model} from MLflow "
                                f"({type(error).__name__})") from None
        return gather_window(
            tail.window, tail.ratings(), model=config.model,
            version=champion, now=now, window_s=config.window_s, last_n=config.quality.last_n,
            baseline=None, profile=profile, scale=config.feedback_scale,
            slo_miss_target=config.slo_miss_target, cost_target_usd=config.cost_target_usd,
            corrections_since_training=tail.corrections_since(last_training),
            answers_since_distillation=tail.answers_since(last_distillation))

    def submit(result: TriggerResult, job_id: str) -> str:
        if result.action == "distill":
            return _submit_once(settings, distill_entrypoint(config), job_id)
        feedback = read_feedback(telemetry, columns=CORRECTION_COLUMNS)  # with the prompt
        requests = rated_records(feedback)
        shares = {"holdout_share": config.rollout.feedback_holdout_share}
        rows = build_retrain_rows(feedback, requests, train_rows, sample=config.retrain_sample,
                                  seed=config.seed, model=config.model,
                                  validation_share=config.validation_share,
                                  repeats=config.correction_repeats, **shares)
        datasets = settings.home / "datasets" / "retrain"
        data = write_jsonl(rows, datasets / f"{job_id}.jsonl")
        validation = validation_rows(feedback, requests, config.model,
                                     share=config.validation_share, **shares)
        eval_data = [*finetune.eval_data, *([str(write_jsonl(
            validation, datasets / f"{job_id}.validation.jsonl"))] if validation else [])]
        parent, _ = _registry_facts(config.model, settings.mlflow_url)
        entrypoint = ["python", FINETUNE_ENTRYPOINT, "--config", config.finetune_config,
                      *config.finetune_overrides,
                      *retrain_overrides(config.model, data, result, parent,
                                         finetune.registers_adapter, eval_data)]
        return _submit_once(settings, entrypoint, job_id)

    def alert(result: TriggerResult) -> None:
        print(f"ALERT {config.model} {result.name}: {result.reason}", flush=True)

    policies = [QualityTrigger(config.quality), DriftTrigger(config.drift),
                NewLabelsTrigger(config.new_labels), LatencyCostAlert(config.latency_cost)]
    if config.distill is not None:
        policies.append(DistillTrigger(config.distill))
    state = TriggerState(trigger_state_path(config, settings))
    return TriggerEvaluator(policies, state, gather, submit, alert)


def _submit_once(settings: Settings, entrypoint: list[str], job_id: str) -> str:
    from tandem.ray_jobs import submit_job

    try:
        return submit_job(settings, entrypoint, submission_id=job_id)
    except Exception as error:
        if "already exists" in str(error):  # submitted before; Ray keeps one job per id
            return job_id
        raise


def build_rollout(config: WatchConfig, settings: Settings,
                  observed_tags: Callable[[str, int, dict[str, str]], None] | None = None,
                  ) -> Rollout:
    """A `Rollout` of `config.model` over the real registry, telemetry and Serve deployment.
    Versions are scored on the fine-tuning config's eval data (as many rows as its runs
    score) and on the corrections kept out of retraining (`held_out`), by a vLLM engine in a
    Ray task (`tandem.rollout.evaluate`). `observed_tags(model, version, tags)` sees every
    version's tags as they are read or written (the rollout-stage metric)."""
    from tandem.config import load_config
    from tandem.registry import (
        CHALLENGER,
        CHAMPION,
        PREVIOUS,
        alias_version,
        set_version_tags,
        version_tags,
    )
    from tandem.rollout.controller import Rollout, RolloutOps
    from tandem.rollout.evaluate import offline_scores
    from tandem.rollout.live import live_stats
    from tandem.serve import deploy
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.request_log import read_requests
    from tandem.telemetry.schema import as_utc
    from tandem.telemetry.window import rated_records
    from tandem.train.config import FinetuneConfig
    from tandem.train.run import resolve_data_paths
    from tandem.triggers.retrain_data import correction_rows, held_out

    model, url, telemetry = config.model, settings.mlflow_url, settings.home / "telemetry"
    finetune = load_config(FinetuneConfig, config.finetune_config)
    # the rows a training run scores its checkpoints on (the first eval_max_examples of each)
    holdout = _training_rows(resolve_data_paths(finetune.eval_data, settings),
                             finetune.eval_max_examples)
    share = config.rollout.feedback_holdout_share

    def aliases() -> dict[str, int | None]:
        return {alias: alias_version(model, alias, url) for alias in (CHAMPION, CHALLENGER, PREVIOUS)}

    def score(*versions: int):
        feedback = read_feedback(telemetry, columns=CORRECTION_COLUMNS)
        corrections = correction_rows(feedback, rated_records(feedback), model)
        judged = [row for row in corrections if held_out(row["prompt"], share)]
        return offline_scores([_candidate(model, version, settings) for version in versions],
                              holdout, judged, finetune.prompt_format, finetune.use_gpu)

    def live(version: int, since: float, until: float):
        start = as_utc(since)  # a request's ratings come after it
        requests = read_requests(telemetry, since=start, columns=LIVE_COLUMNS)
        return live_stats(requests, read_feedback(telemetry, since=start), model=model,
                          version=version, since=since, until=until, scale=config.feedback_scale)

    def move_champion(version: int) -> None:  # the aliases move once `version` serves
        deploy.serve_champion(model, version, settings)

    def tags(version: int) -> dict[str, str]:
        found = version_tags(model, version, url)
        if observed_tags is not None:
            observed_tags(model, version, found)
        return found

    def set_tags(version: int, new: dict[str, str]) -> None:
        set_version_tags(model, version, new, url)
        if observed_tags is not None:
            observed_tags(model, version, new)

    ops = RolloutOps(
        aliases=aliases, tags=tags, set_tags=set_tags,
        score=score, live=live,
        start_canary=lambda version: deploy.start_canary(
            model, version, config.rollout.canary_share, settings, config.rollout.canary_pools),
        stop_canary=lambda: deploy.stop_canary(model, settings),
        promote=move_champion,
        rollback=lambda: move_champion(alias_version(model, PREVIOUS, url)))
    return Rollout(config.rollout, ops, log=lambda line: print(f"{model} rollout {line}", flush=True))


def build_quality_refresh(config: WatchConfig, settings: Settings,
                          ) -> Callable[[pa.Table], list[str]]:
    """A step of the loop that pools each served version's rated answers into its recorded
    quality per tier (`tandem.rollout.quality`): `config.model` and its student (`distill`),
    their champion and challenger versions, each only once it was scored held out. The
    router gets a serving version's new quality at once (champion or canary). Called with
    the feedback that is new since the last step; a version it rates is judged on its
    ratings since it was registered, as the feedback store copied their requests. Returns
    one line per version updated."""
    import pyarrow.compute as pc

    from tandem.registry import (
        CHALLENGER,
        CHAMPION,
        QUALITY_TAG,
        alias_version,
        mlflow_client,
        set_version_tags,
        version_tags,
    )
    from tandem.rollout.quality import HELDOUT, pooled_tags, rated_answers
    from tandem.serve.deploy import refresh_quality
    from tandem.serve.students import quality_of
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.schema import as_utc
    from tandem.telemetry.window import rated_records

    url = settings.mlflow_url
    models = [config.model] + ([config.distill.student_model] if config.distill else [])

    def ratings_of(model: str, version: int) -> pa.Table:
        registered = mlflow_client(url).get_model_version(model, str(version)).creation_timestamp
        feedback = read_feedback(settings.home / "telemetry", since=as_utc(registered / 1000))
        return feedback.filter(pc.and_(pc.equal(feedback["model"], model),
                                       pc.equal(feedback["model_version"], version)))

    def refresh(new_feedback: pa.Table) -> list[str]:
        lines = []
        rated_now = set(zip(new_feedback["model"].to_pylist(),
                            new_feedback["model_version"].to_pylist(), strict=True))
        for model in models:
            versions = {alias_version(model, alias, url) for alias in (CHAMPION, CHALLENGER)}
            for version in versions - {None}:
                if (model, version) not in rated_now:
                    continue  # nothing new to pool
                tags = version_tags(model, version, url)
                if not any(key.startswith(HELDOUT) for key in tags):
                    continue  # never scored held out: nothing to pool with
                feedback = ratings_of(model, version)
                rated = rated_answers(rated_records(feedback), feedback, model=model,
                                      version=version, scale=config.feedback_scale)
                new = {key: value for key, value in pooled_tags(tags, rated).items()
                       if tags.get(key) != value}
                if not new:
                    continue
                set_version_tags(model, version, new, url)
                quality = quality_of({**tags, **new})
                refresh_quality(model, version, quality, settings)  # if it serves it
                lines.append(f"{model} v{version} quality from rated answers: " + ", ".join(
                    f"{key.removeprefix(QUALITY_TAG)} {value}"
                    for key, value in sorted(new.items()) if key.startswith(QUALITY_TAG)))
        return lines

    return refresh


def build_trace_export(config: WatchConfig, settings: Settings) -> TraceExport:
    """Exports `config.model`'s sampled and rated requests to MLflow (tandem.telemetry.traces)."""
    from tandem.registry import mlflow_client
    from tandem.telemetry.traces import TraceExport

    def model_id_of(version: int) -> str | None:
        return mlflow_client(settings.mlflow_url).get_model_version(config.model, str(version)).model_id

    return TraceExport(settings.mlflow_url, config.model,
                       settings.home / "telemetry" / f"traces-{config.model}.json",
                       share=config.trace_share, model_id_of=model_id_of)

"""`tandem watch`: judge the champion's telemetry every interval and submit a retraining job
when a trigger fires; `jobs/retrain_watch.py` runs the same loop as a long-lived Ray job.

The pieces are the pure ones of `tandem.triggers`, wired to the real stores here: the
request log and feedback under `$TANDEM_HOME/telemetry`, the champion and the time of the
newest training run from MLflow, durable state in `$TANDEM_HOME/triggers/<model>.json`,
and `jobs/finetune.py` submitted through Ray's Jobs API with the trigger, its window and
the parent version (the job fine-tunes `models:/<model>/<champion>`, which `run_finetune`
records as `tandem.parent_version`). The retraining set is written to
`$TANDEM_HOME/datasets/retrain/<submission id>.jsonl` before the job is submitted.
After every evaluation the rollout (`tandem.rollout`) takes the next step of a retrained
challenger: offline evaluation, canary on live traffic, promotion, or rollback; and
sampled and rated requests go to MLflow as traces with the feedback as assessments.

    tandem watch [--config WATCH.yaml] [--model NAME] [--interval S] [--once] [-- --key=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tandem.config import StrictConfig
from tandem.errors import UserError
from tandem.rollout.verdicts import RolloutConfig
from tandem.triggers.policies import DriftConfig, LatencyCostConfig, NewLabelsConfig, QualityConfig

if TYPE_CHECKING:
    from tandem.rollout.controller import Rollout
    from tandem.settings import Settings
    from tandem.telemetry.traces import TraceExport
    from tandem.triggers.policies import TriggerResult, TriggerWindow
    from tandem.triggers.watcher import Watcher

logger = logging.getLogger(__name__)

FINETUNE_ENTRYPOINT = "jobs/finetune.py"


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
    seed: int = Field(0, description="Seed of the training-row sample.")
    profile: str | None = Field(None, description="DataProfile JSON of the champion's training "
                                "prompts; default: built from the fine-tuning config's train_data.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality trigger.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift trigger.")
    new_labels: NewLabelsConfig = Field(default_factory=NewLabelsConfig,
                                        description="New-labels trigger.")
    latency_cost: LatencyCostConfig = Field(default_factory=LatencyCostConfig,
                                            description="Latency/cost alert.")
    trace_share: float = Field(0.05, ge=0, le=1, description="Share of unrated requests "
                               "exported to MLflow as traces (rated ones always are).")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Gates a retrained "
                                   "version passes on its way to champion (tandem.rollout).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="Watch YAML (fields of WatchConfig); defaults otherwise.")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="Registered model to watch (default tandem-tiny).")
    parser.add_argument("--interval", type=float, default=None, metavar="S",
                        help="Seconds between evaluations (default 60).")
    parser.add_argument("--once", action="store_true", help="Evaluate once, print, exit.")
    parser.add_argument("overrides", nargs="*", help="--key=value overrides (after --)")


def load_watch_config(args: argparse.Namespace) -> WatchConfig:
    """The watch config from `--config`, overrides, then `--model` and `--interval`."""
    from tandem.config import load_config

    overrides = list(args.overrides)
    if args.model is not None:
        overrides.append(f"--model={json.dumps(args.model)}")
    if args.interval is not None:
        overrides.append(f"--interval_s={args.interval!r}")
    return load_config(WatchConfig, args.config, overrides)


def retrain_overrides(model: str, data: Path, result: TriggerResult,
                      parent: int | None) -> list[str]:
    """`jobs/finetune.py` overrides that train `model` on `data`, starting from version
    `parent` when there is one, with the trigger's lineage."""
    overrides = [f"--registered_model={model}", f"--train_data={json.dumps([str(data)])}",
                 f"--trigger={json.dumps(f'{result.name}: {result.reason}')}",
                 f"--trigger_window={json.dumps(result.window_id)}"]
    if parent is not None:
        overrides.append(f"--base_model=models:/{model}/{parent}")
    return overrides


def _training_rows(paths: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    from tandem.data.loader import validate_examples_file
    from tandem.triggers.retrain_data import read_jsonl

    rows: list[dict] = []
    for path in paths:
        validate_examples_file(path)
        rows += (read_jsonl(path) if path.suffix == ".jsonl" else
                 pq.read_table(path, columns=["prompt", "completion"]).to_pylist())
    return rows


def _registry_facts(model: str, tracking_uri: str) -> tuple[int | None, float | None]:
    """`model`'s champion version and the creation time of its newest version (POSIX
    seconds), each None when there is none; `UserError` when MLflow does not answer."""
    from tandem.registry import CHAMPION, _client, alias_version

    try:
        versions = _client(tracking_uri).search_model_versions(f"name='{model}'")
        newest = max((mv.creation_timestamp / 1000 for mv in versions), default=None)
        return alias_version(model, CHAMPION, tracking_uri), newest
    except Exception as error:  # MLflow raises many types for "server unreachable"
        raise UserError(f"cannot read {model} from MLflow at {tracking_uri} "
                        f"({type(error).__name__}); start the stack with `tandem up`") from None


def build_watcher(config: WatchConfig, settings: Settings) -> Watcher:
    """A `Watcher` over `settings.home`'s telemetry that submits `jobs/finetune.py`."""
    from tandem.config import load_config
    from tandem.jobs import submit_job
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.request_log import read_requests
    from tandem.train.config import FinetuneConfig
    from tandem.train.run import resolve_data_paths
    from tandem.triggers.policies import (
        DriftTrigger,
        LatencyCostAlert,
        NewLabelsTrigger,
        QualityTrigger,
    )
    from tandem.triggers.profile import DataProfile
    from tandem.triggers.retrain_data import build_retrain_rows, write_jsonl
    from tandem.triggers.state import TriggerState
    from tandem.triggers.watcher import Watcher
    from tandem.triggers.window import gather_window

    finetune = load_config(FinetuneConfig, config.finetune_config)
    train_rows = _training_rows(resolve_data_paths(finetune.train_data, settings))
    profile = (DataProfile.load(config.profile) if config.profile
               else DataProfile.build([row["prompt"] for row in train_rows]))
    telemetry = settings.home / "telemetry"

    def gather(now: float) -> TriggerWindow:
        champion, last_training = _registry_facts(config.model, settings.mlflow_url)
        return gather_window(
            read_requests(telemetry), read_feedback(telemetry), model=config.model,
            version=champion, now=now, window_s=config.window_s, last_n=config.quality.last_n,
            baseline=None, profile=profile, scale=config.feedback_scale,
            slo_miss_target=config.slo_miss_target, cost_target_usd=config.cost_target_usd,
            last_training_time=last_training)

    def submit(result: TriggerResult, job_id: str) -> str:
        rows = build_retrain_rows(read_feedback(telemetry), read_requests(telemetry), train_rows,
                                  sample=config.retrain_sample, seed=config.seed,
                                  model=config.model,
                                  holdout_share=config.rollout.feedback_holdout_share,
                                  repeats=config.correction_repeats)
        data = write_jsonl(rows, settings.home / "datasets" / "retrain" / f"{job_id}.jsonl")
        parent, _ = _registry_facts(config.model, settings.mlflow_url)
        entrypoint = ["python", FINETUNE_ENTRYPOINT, "--config", config.finetune_config,
                      *config.finetune_overrides,
                      *retrain_overrides(config.model, data, result, parent)]
        try:
            return submit_job(settings, entrypoint, submission_id=job_id)
        except Exception as error:
            if "already exists" in str(error):  # submitted before; Ray keeps one job per id
                return job_id
            raise

    def alert(result: TriggerResult) -> None:
        print(f"ALERT {config.model} {result.name}: {result.reason}", flush=True)

    policies = [QualityTrigger(config.quality), DriftTrigger(config.drift),
                NewLabelsTrigger(config.new_labels), LatencyCostAlert(config.latency_cost)]
    state = TriggerState(settings.home / "triggers" / f"{config.model}.json")
    return Watcher(policies, state, gather, submit, alert)


def build_rollout(config: WatchConfig, settings: Settings) -> Rollout:
    """A `Rollout` of `config.model` over the real registry, telemetry and Serve deployment.
    Versions are scored on the fine-tuning config's eval data and on the corrections kept
    out of retraining (`held_out`)."""
    from tandem.config import load_config
    from tandem.registry import (
        CHALLENGER,
        CHAMPION,
        PREVIOUS,
        alias_version,
        download_model,
        promote,
        set_version_tags,
        version_tags,
    )
    from tandem.rollout.controller import Rollout, RolloutOps
    from tandem.rollout.evaluate import offline_scores
    from tandem.rollout.live import live_stats
    from tandem.serve import deploy
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.request_log import read_requests
    from tandem.train.config import FinetuneConfig
    from tandem.train.run import resolve_data_paths
    from tandem.triggers.retrain_data import correction_rows, held_out

    model, url, telemetry = config.model, settings.mlflow_url, settings.home / "telemetry"
    finetune = load_config(FinetuneConfig, config.finetune_config)
    holdout = _training_rows(resolve_data_paths(finetune.eval_data, settings))
    share = config.rollout.feedback_holdout_share

    def aliases() -> dict[str, int | None]:
        return {alias: alias_version(model, alias, url) for alias in (CHAMPION, CHALLENGER, PREVIOUS)}

    def score(*versions: int):
        corrections = correction_rows(read_feedback(telemetry), read_requests(telemetry), model)
        judged = [row for row in corrections if held_out(row["prompt"], share)]
        return tuple(offline_scores(download_model(f"models:/{model}/{version}",
                                                   settings.models_dir / "registry", url)[0],
                                    holdout, judged) for version in versions)

    def live(version: int, since: float, until: float):
        return live_stats(read_requests(telemetry), read_feedback(telemetry), model=model,
                          version=version, since=since, until=until, scale=config.feedback_scale)

    def move_champion(version: int) -> None:
        promote(model, version, url)
        deploy.swap(model, version, settings)

    ops = RolloutOps(
        aliases=aliases, tags=lambda version: version_tags(model, version, url),
        set_tags=lambda version, tags: set_version_tags(model, version, tags, url),
        score=score, live=live,
        start_canary=lambda version: deploy.start_canary(
            model, version, config.rollout.canary_share, settings, config.rollout.canary_pools),
        stop_canary=lambda: deploy.stop_canary(model, settings),
        promote=move_champion,
        rollback=lambda: move_champion(alias_version(model, PREVIOUS, url)))
    return Rollout(config.rollout, ops, log=lambda line: print(f"{model} rollout {line}", flush=True))


def build_trace_export(config: WatchConfig, settings: Settings) -> TraceExport:
    """Exports `config.model`'s sampled and rated requests to MLflow (tandem.telemetry.traces)."""
    from tandem.registry import _client
    from tandem.telemetry.traces import TraceExport

    def model_id_of(version: int) -> str | None:
        return _client(settings.mlflow_url).get_model_version(config.model, str(version)).model_id

    return TraceExport(settings.mlflow_url, config.model,
                       settings.home / "telemetry" / f"traces-{config.model}.json",
                       share=config.trace_share, model_id_of=model_id_of)


def run(args: argparse.Namespace) -> int:
    from tandem.settings import load_settings

    config = load_watch_config(args)
    if not Path(FINETUNE_ENTRYPOINT).exists():
        raise UserError(f"run `tandem watch` from the project root ({FINETUNE_ENTRYPOINT} not found)")
    if not Path(config.finetune_config).is_file():
        raise UserError(f"{config.finetune_config}: no such fine-tuning config (finetune_config)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = load_settings()
    watcher = build_watcher(config, settings)
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.request_log import read_requests

    rollout = build_rollout(config, settings)
    traces = build_trace_export(config, settings)
    telemetry = settings.home / "telemetry"
    while True:
        try:
            results = watcher.tick(time.time())
            rollout.tick(time.time())
            traces.export(read_requests(telemetry), read_feedback(telemetry))
        except Exception:
            if args.once:
                raise
            logger.exception("watch %s: evaluation failed; next try in %g s",
                             config.model, config.interval_s)
        else:
            for result in results:
                verdict = f"FIRED ({result.action})" if result.fired else "quiet"
                print(f"{config.model} {result.name} [{result.window_id}] {verdict}: {result.reason}",
                      flush=True)
        if args.once:
            return 0
        time.sleep(config.interval_s)

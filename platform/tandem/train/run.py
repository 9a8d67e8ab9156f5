"""Driver of a fine-tuning job: prepare data with Ray Data, run the Ray Train
workers, register the best checkpoint in MLflow.

Called by `jobs/finetune.py` (inside a Ray job) and by tests; the same code
runs on the local stack and on a real cluster.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tandem.errors import UserError
from tandem.registry import (
    Lineage,
    git_commit,
    is_adapter_dir,
    register_adapter,
    register_checkpoint,
    resolve_version,
    with_retries,
)
from tandem.settings import Settings
from tandem.train.config import FinetuneConfig
from tandem.train.loop import LINEAGE_FILE, MODEL_SUBDIR, train_loop_per_worker
from tandem.train.tracking import RunLogger, end_run, start_run

BUILTIN_PREFIX = "builtin:"


@dataclass
class FinetuneResult:
    run_name: str
    checkpoint_dir: Path
    metrics: dict[str, float]
    mlflow_run_id: str | None
    version: int | None


class RegistrationFailed(Exception):
    """Training finished but MLflow would not take the model; the checkpoint is kept."""


def resolve_data_paths(specs: list[str], settings: Settings) -> list[Path]:
    """`builtin:SPLIT` -> the task dataset file (written once); other specs are paths."""
    from tandem.data.task import write_task_dataset

    paths = []
    for spec in specs:
        if spec.startswith(BUILTIN_PREFIX):
            split = spec.removeprefix(BUILTIN_PREFIX)
            files = write_task_dataset(settings.home / "datasets" / "task")
            if split not in files:
                raise UserError(f"{spec}: unknown built-in split (have: {', '.join(sorted(files))})")
            paths.append(Path(files[split]))
        else:
            paths.append(Path(spec).expanduser().resolve())
    return paths


def resolve_base_model_dir(spec: str, settings: Settings) -> Path | str:
    """A directory (or hub id) `from_pretrained` can load for `spec`."""
    if spec.startswith("models:/"):
        from tandem.registry import download_model

        model_dir = download_model(spec, settings.models_dir / "registry", settings.mlflow_url)[0]
        if is_adapter_dir(model_dir):
            raise UserError(f"base_model {spec} is a LoRA adapter, not a model; train on its "
                            "base (its tandem.adapter_base tag names it)")
        return model_dir
    from tandem.models.tiny import resolve_base_model

    return resolve_base_model(spec, settings.models_dir / "base", settings.allowed_model_dirs)


def resolve_init_adapter(uri: str, base_spec: str, settings: Settings) -> tuple[Path, str]:
    """(local directory, version) of the registered adapter a run continues; it must have been
    trained on `base_spec` (the run's pinned base)."""
    from tandem.registry import ADAPTER_BASE_TAG, download_model, version_tags

    name, version = resolve_version(uri, settings.mlflow_url)
    trained_on = version_tags(name, version, settings.mlflow_url).get(ADAPTER_BASE_TAG)
    if trained_on != base_spec:
        raise UserError(f"lora.init_from models:/{name}/{version} was trained on "
                        f"{trained_on or 'no registered base (not an adapter)'}, but this run "
                        f"trains on {base_spec}")
    model_dir = download_model(f"models:/{name}/{version}", settings.models_dir / "registry",
                               settings.mlflow_url)[0]
    return model_dir, str(version)


class _Packer:
    """Ray Data map_batches callable: load the tokenizer once per actor."""

    def __init__(self, tokenizer_dir: str, seq_len: int, prompt_format: str) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.seq_len = seq_len
        self.prompt_format = prompt_format

    def __call__(self, batch):
        from tandem.data.packing import tokenize_and_pack
        from tandem.data.prompts import render_examples

        return tokenize_and_pack(render_examples(batch, self.tokenizer, self.prompt_format),
                                 self.tokenizer, self.seq_len)


def _eval_inputs(paths: list[Path], tokenizer_dir: Path | str, config: FinetuneConfig) -> dict:
    """Holdout prompts/answers for exact match (the first `eval_max_examples` of each file,
    with the index of the file each came from) and packed rows for eval loss (small)."""
    import numpy as np
    from transformers import AutoTokenizer

    from tandem.data.packing import tokenize_and_pack
    from tandem.data.prompts import render_examples

    prompts, answers, files = [], [], []
    for index, path in enumerate(paths):
        with open(path, encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines if line.strip()][: config.eval_max_examples]
        prompts += [row["prompt"] for row in rows]
        answers += [row["completion"] for row in rows]
        files += [index] * len(rows)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rendered = render_examples(
        {"prompt": np.array(prompts, dtype=object), "completion": np.array(answers, dtype=object)},
        tokenizer, config.prompt_format)
    rows = tokenize_and_pack(rendered, tokenizer, config.seq_len)
    return {"eval_prompts": rendered["prompt"].tolist(), "eval_answers": answers,
            "eval_files": files, "eval_rows": {key: value.tolist() for key, value in rows.items()}}


def _validate(paths: list[Path]) -> None:
    from tandem.data.loader import validate_examples_file

    for path in paths:
        validate_examples_file(path)


def join_ray(settings: Settings) -> None:
    """Attach a job's process to its cluster once: the job's own (`RAY_ADDRESS`, set by
    `ray job submit`), else the stack's."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or settings.ray_address,
                 log_to_driver=True)


def run_finetune(
    config: FinetuneConfig, settings: Settings, log: Callable[[str], None] = print
) -> FinetuneResult:
    """Train, keep the best checkpoint, register it. Raises RegistrationFailed
    (after retries) if MLflow is unreachable at the end; the checkpoint stays."""
    from ray.data import DataContext
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from tandem.data.fingerprint import dataset_fingerprint
    from tandem.data.loader import read_examples

    train_paths = resolve_data_paths(config.train_data, settings)
    eval_paths = resolve_data_paths(config.eval_data, settings)
    _validate(train_paths + eval_paths)
    join_ray(settings)

    base_spec = config.base_model
    if base_spec.startswith("models:/"):  # pinned: an adapter names the version it trained on
        base_spec = "models:/{}/{}".format(*resolve_version(base_spec, settings.mlflow_url))
    base_dir = resolve_base_model_dir(base_spec, settings)
    init_adapter_dir, parent_version = None, ""
    if config.lora.init_from:
        init_adapter_dir, parent_version = resolve_init_adapter(config.lora.init_from, base_spec,
                                                                settings)
    run_name = f"{config.registered_model}-{time.strftime('%Y%m%d-%H%M%S')}"
    lineage = Lineage(
        dataset_fingerprint=dataset_fingerprint(train_paths),
        base_model=config.base_model,
        git_commit=git_commit(),
        config_hash=config.config_hash(),
        parent_version=parent_version or (config.base_model.rsplit("/", 1)[-1]
                                          if config.base_model.startswith("models:/") else ""),
        trigger=config.trigger,
        trigger_window=config.trigger_window,
        adapter_base=base_spec if config.registers_adapter else "",
        teacher_version=config.teacher_version,
        traffic_window=config.traffic_window,
    )
    tracking_uri = settings.mlflow_url
    run_id = start_run(tracking_uri, config.experiment, run_name)
    logger = RunLogger(tracking_uri, run_id)
    logger.log_params({**config.model_dump(mode="json"), "train_paths": [str(p) for p in train_paths]})

    log(f"preparing data: {', '.join(map(str, train_paths))}")
    # blocks in file order and shards without locality hints: each rank gets the same rows
    # on every run, so a run is reproducible (Ray Train takes this into its ingest options)
    DataContext.get_current().execution_options.preserve_order = True
    train_ds = read_examples(train_paths).map_batches(
        _Packer, fn_constructor_args=(str(base_dir), config.seq_len, config.prompt_format),
        batch_format="numpy", batch_size=512, concurrency=1,
    ).materialize()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "base_model_dir": str(base_dir),
            "init_adapter_dir": str(init_adapter_dir) if init_adapter_dir else None,
            "tracking_uri": tracking_uri,
            "mlflow_run_id": run_id,
            "lineage": {k: v for k, v in asdict(lineage).items() if v not in ("", None)},
            **_eval_inputs(eval_paths, base_dir, config),
        },
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(settings.checkpoints_dir),
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=config.checkpoints_to_keep,
                checkpoint_score_attribute="eval_exact_match",
                checkpoint_score_order="max",
            ),
        ),
        datasets={"train": train_ds},
    )
    log(f"training {config.registered_model} ({config.mode}, {config.num_workers} workers)")
    result = trainer.fit()
    best_checkpoint, metrics = max(
        result.best_checkpoints or [],
        key=lambda pair: (pair[1]["eval_exact_match"], -pair[1]["eval_loss"]),
        default=(None, {}),
    )
    if best_checkpoint is None:
        raise RuntimeError(f"run {run_name} produced no checkpoint")
    checkpoint_dir = Path(best_checkpoint.path)
    log(f"best checkpoint: {checkpoint_dir} (eval_exact_match "
        f"{metrics['eval_exact_match']:.3f}, eval_loss {metrics['eval_loss']:.4f})")
    outcome = FinetuneResult(run_name, checkpoint_dir, metrics, run_id, None)
    if config.register_model:
        outcome.version = register_saved_checkpoint(
            checkpoint_dir, config.registered_model, settings, run_id, log)
    end_run(tracking_uri, run_id)
    return outcome


def register_saved_checkpoint(
    checkpoint_dir: Path, model_name: str, settings: Settings, run_id: str | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Register a checkpoint written by a fine-tuning run (a full model, or an adapter alone),
    with its saved lineage."""
    model_dir = checkpoint_dir / MODEL_SUBDIR
    lineage_file = checkpoint_dir / LINEAGE_FILE
    adapter = is_adapter_dir(model_dir)
    if not ((model_dir / "config.json").exists() or adapter) or not lineage_file.exists():
        raise UserError(f"{checkpoint_dir} is not a Tandem checkpoint (needs {MODEL_SUBDIR}/ "
                        f"and {LINEAGE_FILE})")
    lineage = Lineage(**json.loads(lineage_file.read_text()))
    register = register_adapter if adapter else register_checkpoint
    try:
        version = with_retries(
            lambda: register(model_dir, model_name, lineage, settings.mlflow_url, run_id),
            what=f"registering {model_name} in MLflow at {settings.mlflow_url}", log=log,
        )
    except Exception as error:
        raise RegistrationFailed(
            f"could not register the checkpoint in MLflow at {settings.mlflow_url} "
            f"({type(error).__name__}); it is kept at {checkpoint_dir}. Register it later with:\n"
            f"  tandem register --checkpoint {checkpoint_dir} --model {model_name}"
        ) from None
    log(f"registered {model_name} version {version}"
        + (f" (adapter on {lineage.adapter_base})" if adapter else ""))
    return version

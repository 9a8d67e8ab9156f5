"""What each Ray Train worker runs: DDP training, per-epoch eval on rank 0,
checkpoints that a restarted worker group resumes from.

A checkpoint holds `model/` (a `save_pretrained` dir with tokenizer, LoRA
already merged, so vLLM and the registry load it as is; with `lora.merge: false` the
adapter alone, `adapter_config.json` and its weights), `trainer_state.pt`
(epoch, optimizer, scheduler) and `lineage.json` (so `tandem register
--checkpoint` can register it later without the job).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tandem.train.config import FinetuneConfig
from tandem.train.steps import (
    Teacher,
    concat_rows,
    evaluate_loss,
    iterate_batches,
    steps_per_epoch,
    train_epoch,
)
from tandem.train.tracking import RunLogger

MODEL_SUBDIR = "model"
STATE_FILE = "trainer_state.pt"
LINEAGE_FILE = "lineage.json"
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: marks a directory holding an adapter alone


def _load_model(source: Path, base_dir: Path, config: FinetuneConfig) -> torch.nn.Module:
    """The model to train from `source`: a full model, or (resuming an unmerged LoRA run)
    an adapter directory, loaded onto `base_dir` with its adapters trainable."""
    from transformers import AutoModelForCausalLM

    if (source / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        return PeftModel.from_pretrained(base, source, is_trainable=True)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if config.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        ))
    return model


def _load_teacher(config: FinetuneConfig) -> Teacher | None:
    """The frozen teacher of a logit distillation, or None."""
    if not config.distill_teacher or config.distill_weight == 0:
        return None
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(config.distill_teacher, dtype=torch.float32)
    model.eval().requires_grad_(False)
    return Teacher(model, config.distill_weight, config.distill_temperature)


def _plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside DDP (and inside PEFT, merged into a copy)."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "merge_and_unload"):
        import copy

        return copy.deepcopy(inner).merge_and_unload()
    return inner


def _save_checkpoint(
    directory: Path, model: torch.nn.Module, tokenizer, optimizer, scheduler, epoch: int,
    lineage: dict[str, Any], adapter_only: bool,
) -> None:
    if adapter_only:  # PEFT writes the adapter's config and weights; the base has the tokenizer
        getattr(model, "module", model).save_pretrained(directory / MODEL_SUBDIR)
    else:
        _plain_model(model).save_pretrained(directory / MODEL_SUBDIR, safe_serialization=True)
        tokenizer.save_pretrained(directory / MODEL_SUBDIR)
    torch.save(
        {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        directory / STATE_FILE,
    )
    (directory / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry: `loop_config` holds the job config and the prepared inputs."""
    import ray.train
    import ray.train.torch
    from transformers import AutoTokenizer

    from tandem.data.task import exact_match_by_group
    from tandem.models.generate import greedy_complete

    config = FinetuneConfig.model_validate(loop_config["config"])
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    model_source = Path(loop_config["base_model_dir"])
    start_epoch, state = 0, None
    resume_dir = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        resume_dir = Path(tempfile.mkdtemp(prefix="tandem-resume-"))
        with checkpoint.as_directory() as directory:
            shutil.copytree(directory, resume_dir, dirs_exist_ok=True)
        state = torch.load(resume_dir / STATE_FILE, weights_only=False)
        model_source = resume_dir / MODEL_SUBDIR
        start_epoch = state["epoch"] + 1
        if rank == 0:
            print(f"resuming from checkpoint after epoch {state['epoch'] + 1}")

    tokenizer = AutoTokenizer.from_pretrained(loop_config["base_model_dir"])
    if checkpoint is None and loop_config.get("init_adapter_dir"):
        model_source = Path(loop_config["init_adapter_dir"])  # continue a registered adapter
    model = ray.train.torch.prepare_model(
        _load_model(model_source, Path(loop_config["base_model_dir"]), config))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay)

    shard = ray.train.get_dataset_shard("train")
    rows = concat_rows(list(shard.iter_batches(batch_size=256, batch_format="numpy")))
    per_epoch = steps_per_epoch(len(rows["input_ids"]), config.batch_size, config.grad_accum_steps)
    total_steps = per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.1, 1.0 - step / total_steps))
    # A merged LoRA run resumes from merged weights with fresh adapters (no moments to reload);
    # full runs and unmerged adapters resume the same parameters, so their moments apply.
    if state is not None and (config.mode == "full" or config.registers_adapter):
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])

    eval_rows = {key: np.asarray(value) for key, value in loop_config["eval_rows"].items()}
    eval_prompts, eval_answers = loop_config["eval_prompts"], loop_config["eval_answers"]
    logger = RunLogger(loop_config["tracking_uri"], loop_config["mlflow_run_id"] if rank == 0 else None)
    autocast = torch.bfloat16 if config.precision == "bf16" else None
    teacher = _load_teacher(config)
    job_started = time.perf_counter()

    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.perf_counter()
        base_step = epoch * per_epoch

        def report_progress(step: int, loss: float) -> None:
            if rank != 0 or step % config.log_every_steps:
                return
            done = base_step + step
            elapsed = time.perf_counter() - epoch_started
            eta = elapsed / step * (total_steps - done)
            print(f"epoch {epoch + 1}/{config.epochs} step {done}/{total_steps} "
                  f"loss {loss:.4f} eta {eta:.0f}s", flush=True)
            logger.log_metrics({"train_loss": loss}, step=done)

        stats = train_epoch(
            model, optimizer, scheduler,
            iterate_batches(rows, config.batch_size, config.seed, epoch),
            config.grad_accum_steps, autocast, report_progress, teacher,
        )
        metrics: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            # every rank sees the same number of rows (equal shards), so the job's
            # throughput is this rank's tokens/s times the world size
            "tokens_per_s": stats.tokens_per_s * world,
        }
        if rank != 0:
            ray.train.report(metrics)
            continue
        plain = _plain_model(model)
        metrics["eval_loss"] = evaluate_loss(plain, eval_rows)
        predictions = greedy_complete(plain, tokenizer, eval_prompts, config.eval_max_new_tokens)
        metrics["eval_exact_match"] = exact_match_by_group(predictions, eval_answers,
                                                            loop_config["eval_files"])
        print(f"epoch {epoch + 1}/{config.epochs} done: train_loss {stats.loss:.4f} "
              f"eval_loss {metrics['eval_loss']:.4f} eval_exact_match "
              f"{metrics['eval_exact_match']:.3f} tokens/s {metrics['tokens_per_s']:,.0f} "
              f"elapsed {time.perf_counter() - job_started:.0f}s", flush=True)
        logger.log_metrics(metrics, step=(epoch + 1) * per_epoch)
        lineage = {**loop_config["lineage"], "eval_exact_match": metrics["eval_exact_match"],
                   "eval_loss": metrics["eval_loss"]}
        with tempfile.TemporaryDirectory(prefix="tandem-ckpt-") as directory:
            _save_checkpoint(Path(directory), model, tokenizer, optimizer, scheduler, epoch,
                             lineage, config.registers_adapter)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    if resume_dir is not None:
        shutil.rmtree(resume_dir, ignore_errors=True)

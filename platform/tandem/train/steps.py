"""Plain PyTorch training steps, shared by the Ray Train workers and the
single-process baseline in `tests/bench/`, so the two are measured on the
same code.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

# input_ids, labels, attention_mask and (optionally) position_ids: int64 [n, seq_len]
PackedRows = dict[str, np.ndarray]


def concat_rows(batches: list[PackedRows]) -> PackedRows:
    """Join packed batches (e.g. from a Ray Data shard) into one table of rows."""
    if not batches:
        return {key: np.zeros((0, 0), dtype=np.int64)
                for key in ("input_ids", "labels", "attention_mask")}
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


def iterate_batches(
    rows: PackedRows, batch_size: int, seed: int, epoch: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled mini-batches of packed rows; the order depends only on (seed, epoch)."""
    count = len(rows["input_ids"])
    order = np.random.default_rng([seed, epoch]).permutation(count)
    for start in range(0, count, batch_size):
        index = order[start:start + batch_size]
        yield {key: torch.from_numpy(value[index]) for key, value in rows.items()}


def steps_per_epoch(row_count: int, batch_size: int, grad_accum_steps: int) -> int:
    return max(1, math.ceil(math.ceil(row_count / batch_size) / grad_accum_steps))


@dataclass
class EpochStats:
    loss: float
    optimizer_steps: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Teacher:
    """A frozen model whose token distributions the trained model also learns."""

    model: torch.nn.Module
    weight: float  # share of the loss that is the KL divergence to the teacher
    temperature: float


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | bool]:
    if "position_ids" in batch:
        # Packed rows: per-example positions (and no attention mask) make attention
        # block-diagonal, so examples packed together never see each other.
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
                "use_cache": False}
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, weight: float, temperature: float) -> torch.Tensor:
    """(1 - weight) x cross-entropy on `labels` + weight x T^2 x KL(teacher || student) at
    temperature T, over the labelled positions (Hinton et al., 2015; the T^2 keeps the
    gradients' scale). Logits are [batch, seq, vocab]; position t predicts label t + 1."""
    student = student_logits[:, :-1]
    teacher = teacher_logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    student, teacher, targets = student[mask].float(), teacher[mask].float(), targets[mask]
    cross_entropy = torch.nn.functional.cross_entropy(student, targets)
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(student / temperature, dim=-1),
        torch.log_softmax(teacher / temperature, dim=-1),
        log_target=True, reduction="batchmean") * temperature ** 2
    return (1 - weight) * cross_entropy + weight * kl


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor],
          teacher: Teacher | None = None) -> torch.Tensor:
    inputs = _inputs(batch)
    if teacher is None:
        return model(**inputs, labels=batch["labels"]).loss
    with torch.no_grad():
        teacher_logits = teacher.model(**inputs).logits
    return distillation_loss(model(**inputs).logits, teacher_logits, batch["labels"],
                             teacher.weight, teacher.temperature)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batches: Iterator[dict[str, torch.Tensor]],
    grad_accum_steps: int = 1,
    autocast_dtype: torch.dtype | None = None,
    on_step: Callable[[int, float], None] | None = None,
    teacher: Teacher | None = None,
) -> EpochStats:
    """One pass over `batches`; gradients are all-reduced once per optimizer step. With a
    `teacher` the loss also pulls toward its token distributions (`distillation_loss`).

    `model` may be DDP-wrapped: intermediate micro-steps run under `no_sync()`
    so gloo/NCCL all-reduce happens only on the last one.
    """
    model.train()
    no_sync = getattr(model, "no_sync", None)
    total_loss, micro, steps, tokens = 0.0, 0, 0, 0
    started = time.perf_counter()
    batch_list = list(batches)
    for index, batch in enumerate(batch_list):
        last_micro = (index + 1) % grad_accum_steps == 0 or index + 1 == len(batch_list)
        sync_context = contextlib.nullcontext() if last_micro or no_sync is None else no_sync()
        with sync_context:
            with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = _loss(model, batch, teacher)
            (loss / grad_accum_steps).backward()
        total_loss += loss.item()
        micro += 1
        tokens += int(batch["attention_mask"].sum())
        if last_micro:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if on_step is not None:
                on_step(steps, total_loss / micro)
    return EpochStats(
        loss=total_loss / max(micro, 1),
        optimizer_steps=steps,
        tokens=tokens,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, rows: PackedRows, batch_size: int = 32) -> float:
    """Mean token loss over packed eval rows."""
    model.eval()
    losses = [
        _loss(model, batch).item() for batch in iterate_batches(rows, batch_size, seed=0, epoch=0)
    ]
    return float(np.mean(losses)) if losses else float("nan")

"""The retraining set: users' corrections plus a sample of the original training data.

Corrections alone would teach the new slice and make the model forget the old one, so a
seeded sample of the training rows rides along. Rows have the task's format
(`tandem.data.task`): `{"prompt": "translate: red cat =>", "completion": " fipo zemu"}`.
A completion request logs exactly that prompt and is kept as is; a chat request logs
its messages, and its user turn is the task prompt without ` =>` (`tandem.data.prompts`),
so the row is that turn plus the suffix. The fine-tuning job renders rows in the model's
prompt format: as text for the tiny models (whose chat template renders a chat request as
exactly this text), in the model's own chat template for a chat model (SmolLM2), which is
what its server applied to the request. The correction becomes the completion with the
single leading space every task completion has. One row per prompt:
the latest correction wins over older ones and over the training row it contradicts. Two
fixed shares of corrected prompts stay out of the set: the rollout judges the retrained
version on one (`held_out`) against the champion; the retraining run picks its checkpoint
on the other (`validates`), so it keeps the epoch that learned the corrections best
rather than the one closest to the old holdout alone. The few corrections may be repeated
so the replayed original data does not drown them (measured on the tiny task: all 1,600
training rows plus 96 corrections x3 kept holdout exact match at 0.91, vs 0.88 before,
and took the new slice from 0.00 to 0.30; 300 rows x1 at the same learning rate fell to
0.72).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tandem.data.task import PROMPT_SUFFIX
from tandem.telemetry.window import chat_messages, ratings
from tandem.tenants import bounded_by_tenant


def training_prompt(logged: str) -> str:
    """The task-format prompt of a logged prompt: a chat request's last user turn plus the
    task's suffix (`tandem.data.prompts.chat_message` undone)."""
    messages = chat_messages(logged)
    return logged if messages is None else messages[-1]["content"].strip() + PROMPT_SUFFIX


def _corrections(feedback: pa.Table, requests: pa.Table,
                 model: str | None) -> list[tuple[dict, str | None]]:
    """(task row, tenant that corrected it) of the latest correction per prompt, oldest
    first."""
    rows: dict[str, tuple[dict, str | None]] = {}
    corrected = feedback.filter(pc.is_valid(feedback["correction"]))["request_id"]
    feedback = feedback.filter(pc.is_in(feedback["request_id"],
                                        value_set=corrected.combine_chunks()))
    for rating in ratings(feedback, requests):
        if rating.correction is None or rating.prompt is None:
            continue
        if model is not None and rating.model != model:
            continue
        prompt = training_prompt(rating.prompt)
        rows.pop(prompt, None)
        rows[prompt] = ({"prompt": prompt, "completion": " " + rating.correction.strip()},
                        rating.tenant)
    return list(rows.values())


def correction_rows(feedback: pa.Table, requests: pa.Table,
                    model: str | None = None) -> list[dict]:
    """The latest correction per prompt (of `model`'s requests, when given) as task rows.
    Corrections whose prompt was not logged (text logging off) cannot be used and are
    skipped."""
    return [row for row, _ in _corrections(feedback, requests, model)]


def _prompt_position(prompt: str) -> float:
    """Where `prompt` falls in [0, 1), by SHA-256: the same place on every run."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(prompt: str, share: float) -> bool:
    """Whether a correction of `prompt` is kept out of retraining, to judge the retrained
    version on: a fixed `share` of prompts, so a prompt never changes sides."""
    return _prompt_position(prompt) < share


def validates(prompt: str, holdout_share: float, share: float) -> bool:
    """Whether a correction of `prompt` is kept out of retraining to pick the run's
    checkpoint: the fixed `share` of prompts next to the `held_out` ones, never among them."""
    return holdout_share <= _prompt_position(prompt) < holdout_share + share


def validation_rows(feedback: pa.Table, requests: pa.Table, model: str | None = None, *,
                    holdout_share: float, share: float) -> list[dict]:
    """The correction rows a retraining run scores its checkpoints on (`validates`)."""
    return [row for row in correction_rows(feedback, requests, model)
            if validates(row["prompt"], holdout_share, share)]


def build_retrain_rows(feedback: pa.Table, requests: pa.Table, train_rows: Sequence[dict],
                       *, sample: int, seed: int, model: str | None = None,
                       holdout_share: float = 0.0, validation_share: float = 0.0,
                       repeats: int = 1) -> list[dict]:
    """Correction rows (of `model`'s requests, when given; minus the `held_out` and the
    `validates` ones; with no tenant over half of them, `bounded_by_tenant`), each `repeats`
    times, plus `sample` training rows drawn with `seed` (a prompt is either corrected or
    sampled, never both), shuffled with `seed` from prompt order, so the set depends on what
    was corrected, not on the order feedback arrived in."""
    corrected = _corrections(feedback, requests, model)
    trainable = [(row, tenant) for row, tenant in corrected
                 if not held_out(row["prompt"], holdout_share)
                 and not validates(row["prompt"], holdout_share, validation_share)]
    corrections = [row for row, _ in bounded_by_tenant(trainable, lambda pair: pair[1])]
    corrected_prompts = {row["prompt"] for row, _ in corrected}
    rng = random.Random(seed)
    out = [row for row in corrections for _ in range(repeats)]
    out += [{"prompt": row["prompt"], "completion": row["completion"]}
            for row in rng.sample(list(train_rows), min(sample, len(train_rows)))
            if row["prompt"] not in corrected_prompts]
    out.sort(key=lambda row: (row["prompt"], row["completion"]))
    rng.shuffle(out)
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL example file (blank lines skipped)."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def write_jsonl(rows: Sequence[dict], path: str | Path) -> Path:
    """Write `rows` as a JSONL example file `jobs/finetune.py` reads via `train_data`;
    written under a temporary name and renamed, so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return path

"""Tokenize prompt/completion examples and pack them into fixed-length training rows.

Short examples padded one per row would waste most of every batch, so whole
examples are packed greedily into rows of exactly `seq_len` tokens. An example
is never split across rows: the model always sees a prompt together with its
answer. Loss is on completions only (prompt and padding labels are -100), since
serving only ever asks the model to continue a prompt.

Rows also carry `position_ids` that restart at 0 for every example. Passed to
a Hugging Face model *instead of* `attention_mask` (with `use_cache=False`),
they make attention block-diagonal, so an example never attends to the one
packed before it; that is how serving sees a prompt, and the tiny model learns
the task several times faster than with cross-example attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.errors import UserError

IGNORE_INDEX = -100


def _pack_rows(
    examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int
) -> dict[str, np.ndarray]:
    rows: list[tuple[list[int], list[int], list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for prompt, completion in examples:
        if len(ids) + len(prompt) + len(completion) > seq_len:
            rows.append((ids, labels, positions))
            ids, labels, positions = [], [], []
        ids += prompt + completion
        labels += [IGNORE_INDEX] * len(prompt) + completion
        positions += range(len(prompt) + len(completion))
    if ids:
        rows.append((ids, labels, positions))
    input_ids = np.full((len(rows), seq_len), pad_id, dtype=np.int64)
    label_ids = np.full((len(rows), seq_len), IGNORE_INDEX, dtype=np.int64)
    attention_mask = np.zeros((len(rows), seq_len), dtype=np.int64)
    # Padding is one more segment of its own, so it restarts at 0 too.
    position_ids = np.tile(np.arange(seq_len, dtype=np.int64), (len(rows), 1))
    for i, (row_ids, row_labels, row_positions) in enumerate(rows):
        n = len(row_ids)
        input_ids[i, :n] = row_ids
        label_ids[i, :n] = row_labels
        attention_mask[i, :n] = 1
        position_ids[i, :n] = row_positions
        position_ids[i, n:] -= n
    return {
        "input_ids": input_ids,
        "labels": label_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
    }


def tokenize_and_pack(
    batch: dict[str, np.ndarray], tokenizer: Any, seq_len: int
) -> dict[str, np.ndarray]:
    """Turn a batch of `prompt`/`completion` strings into packed `seq_len` token rows.

    Made for `Dataset.map_batches(tokenize_and_pack, batch_format="numpy",
    fn_kwargs={"tokenizer": tok, "seq_len": n})`. Each completion is followed
    by the tokenizer's EOS so the model learns where to stop.

    Returns:
        `input_ids`, `labels` (-100 on prompt tokens and padding),
        `attention_mask` (0 on padding) and `position_ids` (restarting at 0
        per example), each int64 of shape [rows, seq_len].

    Raises:
        UserError: an example needs more than `seq_len` tokens.
    """
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos_id is None or pad_id is None:
        raise UserError("the tokenizer needs both an eos and a pad token for packing")
    prompts = [str(p) for p in batch["prompt"]]
    completions = [str(c) for c in batch["completion"]]
    if not prompts:
        return _pack_rows([], seq_len, pad_id)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    examples = []
    for index, (prompt, completion) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        completion = list(completion) + [eos_id]
        if len(prompt) + len(completion) > seq_len:
            raise UserError(
                f"example {index} of this batch needs {len(prompt) + len(completion)} tokens, "
                f"more than seq_len={seq_len}: prompt {prompts[index][:80]!r}"
            )
        examples.append((list(prompt), completion))
    return _pack_rows(examples, seq_len, pad_id)

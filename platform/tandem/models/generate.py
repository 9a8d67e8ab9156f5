"""Greedy, batched completion with a Hugging Face causal LM, for exact-match evaluation.

Training jobs score a checkpoint by exact match before registering it, so the
answers must be deterministic (greedy) and must not depend on batch makeup:
prompts are left-padded by hand, with an attention mask, so every prompt's last
token sits right before the first generated one and padding is never attended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def greedy_complete(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 8,
    batch_size: int = 64,
) -> list[str]:
    """Greedy completions of `prompts`, cut at the first EOS, special tokens removed.

    The model's train/eval mode is restored afterwards.
    """
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad_id is None:
        pad_id = eos_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = tokenizer(list(prompts[start : start + batch_size]), add_special_tokens=False)
            rows = encoded["input_ids"]
            width = max(len(ids) for ids in rows)
            input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in rows])
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows])
            with torch.inference_mode():
                generated = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=eos_id,
                    pad_token_id=pad_id,
                )
            for row in generated[:, width:].tolist():
                if eos_id in row:
                    row = row[: row.index(eos_id)]
                outputs.append(tokenizer.decode(row, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return outputs

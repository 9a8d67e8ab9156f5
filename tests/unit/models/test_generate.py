"""Greedy completion: deterministic and independent of how prompts are batched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tandem.data.task import format_prompt
from tandem.models.generate import greedy_complete
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir: Path):
    torch.set_num_threads(2)
    return (
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
    )


PROMPTS = [
    format_prompt(["red"]),
    format_prompt(["red", "cat", "dog", "cow"]),
    format_prompt(["bread", "milk"]),
]


def test_batched_left_padding_matches_one_by_one(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    together = greedy_complete(model, tokenizer, PROMPTS, max_new_tokens=6)
    alone = greedy_complete(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1)
    assert together == alone
    assert len(together) == len(PROMPTS) and all(isinstance(t, str) for t in together)
    assert greedy_complete(model, tokenizer, PROMPTS, max_new_tokens=6) == together


def test_output_length_is_bounded_and_mode_restored(model_and_tokenizer) -> None:
    model, tokenizer = model_and_tokenizer
    model.train()
    out = greedy_complete(model, tokenizer, PROMPTS[:1], max_new_tokens=3)
    assert model.training
    assert len(tokenizer(out[0], add_special_tokens=False)["input_ids"]) <= 3
    assert greedy_complete(model, tokenizer, [], max_new_tokens=3) == []

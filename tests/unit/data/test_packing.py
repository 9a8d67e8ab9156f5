"""Packing: whole examples per row, loss on completions only, exact row length."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tandem.data.packing import IGNORE_INDEX, tokenize_and_pack
from tandem.data.task import build_splits, format_completion, format_prompt
from tandem.errors import UserError


def _batch(word_lists: list[list[str]]) -> dict[str, np.ndarray]:
    return {
        "prompt": np.array([format_prompt(w) for w in word_lists]),
        "completion": np.array([format_completion(w) for w in word_lists], dtype=object),
    }


def _examples(packed: dict[str, np.ndarray], eos_id: int) -> list[tuple[list[int], list[int]]]:
    """Split each packed row back into (prompt ids, completion ids incl. EOS)."""
    out = []
    for ids, labels, mask in zip(
        packed["input_ids"], packed["labels"], packed["attention_mask"], strict=True
    ):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()
        prompt: list[int] = []
        completion: list[int] = []
        for token, label in zip(ids[:n].tolist(), labels[:n].tolist(), strict=True):
            if label == IGNORE_INDEX:
                if completion:
                    out.append((prompt, completion))
                    prompt, completion = [], []
                prompt.append(token)
            else:
                assert label == token
                completion.append(token)
        assert completion and completion[-1] == eos_id, "row ends inside an example"
        out.append((prompt, completion))
    return out


def test_packs_whole_examples_in_order(task_tokenizer: Any) -> None:
    words = build_splits(seed=0)["train"][:200]
    batch = _batch(words)
    packed = tokenize_and_pack(batch, task_tokenizer, seq_len=64)
    n_rows = len(packed["input_ids"])
    for key in ("input_ids", "labels", "attention_mask"):
        assert packed[key].dtype == np.int64 and packed[key].shape == (n_rows, 64)
    assert n_rows < len(words) / 4, "rows should hold several examples each"
    eos = task_tokenizer.eos_token_id
    expected = [
        (
            task_tokenizer(p, add_special_tokens=False)["input_ids"],
            task_tokenizer(c, add_special_tokens=False)["input_ids"] + [eos],
        )
        for p, c in zip(batch["prompt"], batch["completion"], strict=True)
    ]
    assert _examples(packed, eos) == expected


def test_padding_is_masked_and_has_pad_id(task_tokenizer: Any) -> None:
    packed = tokenize_and_pack(_batch([["red"], ["cat", "dog"]]), task_tokenizer, seq_len=32)
    assert packed["input_ids"].shape == (1, 32)
    mask = packed["attention_mask"][0].astype(bool)
    assert (packed["input_ids"][0][~mask] == task_tokenizer.pad_token_id).all()
    assert (packed["labels"][0][~mask] == IGNORE_INDEX).all()
    # prompt tokens: "translate", ":", " red", " =>" -> the first four labels are ignored
    assert (packed["labels"][0][:4] == IGNORE_INDEX).all() and packed["labels"][0][4] >= 0


def test_example_that_does_not_fit_starts_a_new_row(task_tokenizer: Any) -> None:
    one = ["red", "cat", "dog", "cow"]  # prompt 7 + completion 4 + EOS = 12 tokens
    packed = tokenize_and_pack(_batch([one, one, one]), task_tokenizer, seq_len=30)
    assert packed["attention_mask"].sum(axis=1).tolist() == [24, 12]


def test_too_long_example_names_it(task_tokenizer: Any) -> None:
    batch = _batch([["red"], ["red", "cat", "dog", "cow"]])
    with pytest.raises(UserError, match=r"example 1 .*12 tokens.*seq_len=8.*translate: red cat"):
        tokenize_and_pack(batch, task_tokenizer, seq_len=8)


def test_empty_batch(task_tokenizer: Any) -> None:
    empty = {"prompt": np.array([], dtype=object), "completion": np.array([], dtype=object)}
    packed = tokenize_and_pack(empty, task_tokenizer, seq_len=16)
    assert packed["input_ids"].shape == (0, 16)


def test_position_ids_restart_per_example(task_tokenizer: Any) -> None:
    packed = tokenize_and_pack(_batch([["red"], ["cat", "dog"]]), task_tokenizer, seq_len=32)
    # "translate: red =>" + " x<eos>" is 6 tokens, the second example 8, padding 18
    expected = list(range(6)) + list(range(8)) + list(range(18))
    assert packed["position_ids"][0].tolist() == expected
    assert packed["position_ids"].dtype == np.int64

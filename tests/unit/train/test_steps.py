import numpy as np
import pytest
import torch
from tandem.train.steps import concat_rows, evaluate_loss, iterate_batches, steps_per_epoch, train_epoch
from transformers import LlamaConfig, LlamaForCausalLM


def packed_rows(count: int, seq_len: int = 16, vocab: int = 32) -> dict[str, np.ndarray]:
    """A learnable toy language: each row counts upward modulo the vocabulary."""
    starts = np.arange(count) % vocab
    ids = (starts[:, None] + np.arange(seq_len)[None, :]) % vocab
    return {"input_ids": ids.astype(np.int64), "labels": ids.astype(np.int64),
            "attention_mask": np.ones_like(ids, dtype=np.int64)}


def micro_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))


def test_batches_are_a_deterministic_permutation_per_epoch():
    rows = packed_rows(10)
    first = [b["input_ids"][:, 0].tolist() for b in iterate_batches(rows, 4, seed=1, epoch=0)]
    again = [b["input_ids"][:, 0].tolist() for b in iterate_batches(rows, 4, seed=1, epoch=0)]
    other = [b["input_ids"][:, 0].tolist() for b in iterate_batches(rows, 4, seed=1, epoch=1)]
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(10))
    assert [len(b) for b in first] == [4, 4, 2]


@pytest.mark.parametrize("rows,batch,accum,expected", [(10, 4, 1, 3), (10, 4, 2, 2), (0, 4, 1, 1)])
def test_steps_per_epoch(rows, batch, accum, expected):
    assert steps_per_epoch(rows, batch, accum) == expected


def test_concat_rows_joins_batches():
    joined = concat_rows([packed_rows(3), packed_rows(2)])
    assert joined["input_ids"].shape == (5, 16)


def test_training_lowers_eval_loss_and_counts_tokens():
    torch.set_num_threads(1)
    rows = packed_rows(32)
    model = micro_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = evaluate_loss(model, rows)
    for epoch in range(3):
        stats = train_epoch(model, optimizer, None, iterate_batches(rows, 8, 0, epoch), grad_accum_steps=2)
    after = evaluate_loss(model, rows)
    assert after < before * 0.7
    assert stats.optimizer_steps == 2  # 4 micro-batches, 2 per step
    assert stats.tokens == 32 * 16
    assert stats.tokens_per_s > 0

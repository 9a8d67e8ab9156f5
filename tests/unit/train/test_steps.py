import numpy as np
import pytest
import torch
from tandem.train.steps import (
    Teacher,
    concat_rows,
    distillation_loss,
    evaluate_loss,
    iterate_batches,
    steps_per_epoch,
    train_epoch,
)
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


def test_the_distillation_loss_is_the_label_loss_at_weight_0_and_kl_only_at_weight_1():
    model = micro_model()
    batch = {key: torch.from_numpy(value) for key, value in packed_rows(4).items()}
    batch["labels"][:, :5] = -100  # prompt tokens carry no label
    logits = model(input_ids=batch["input_ids"]).logits
    own = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    other = logits + torch.randn_like(logits)
    assert distillation_loss(logits, other, batch["labels"], 0.0, 2.0).item() == \
        pytest.approx(own.item(), rel=1e-5)
    assert distillation_loss(logits, logits, batch["labels"], 1.0, 2.0).item() == \
        pytest.approx(0.0, abs=1e-6)  # the same distributions: no divergence
    assert distillation_loss(logits, other, batch["labels"], 1.0, 2.0).item() > 0


def test_training_with_a_teacher_pulls_the_student_toward_its_distributions():
    rows = packed_rows(32)
    teacher = micro_model()
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=1e-2)
    for epoch in range(6):
        train_epoch(teacher, optimizer, None, iterate_batches(rows, 8, 0, epoch))
    teacher.eval().requires_grad_(False)
    before = [p.clone() for p in teacher.parameters()]

    def divergence(student):
        batch = {key: torch.from_numpy(value) for key, value in rows.items()}
        with torch.no_grad():
            return distillation_loss(student(input_ids=batch["input_ids"]).logits,
                                     teacher(input_ids=batch["input_ids"]).logits,
                                     batch["labels"], 1.0, 2.0).item()

    torch.manual_seed(1)
    student = LlamaForCausalLM(teacher.config)
    start = divergence(student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    for epoch in range(3):
        train_epoch(student, optimizer, None, iterate_batches(rows, 8, 0, epoch),
                    teacher=Teacher(teacher, weight=1.0, temperature=2.0))
    assert divergence(student) < 0.5 * start
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))

"""Training tokens/s: the Ray Train job (2 workers x 1 thread, gloo DDP) vs a
plain single-process PyTorch loop (2 threads) on the same model, data, batch
and code (`tandem.train.steps`), measured in the same run. Prints the ratio.

    make bench   (or: .venv/bin/python -m pytest -s tests/bench/test_train_throughput.py)
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

EPOCHS = 4
PER_WORKER_BATCH = 16
WORKERS = 2


def single_process_tokens_per_s(stack) -> float:
    import json

    from tandem.data.packing import tokenize_and_pack
    from tandem.train.run import resolve_base_model_dir, resolve_data_paths
    from tandem.train.steps import iterate_batches, train_epoch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base_model_dir("tiny", stack)
    rows = [json.loads(line) for line in resolve_data_paths(["builtin:train"], stack)[0].open()]
    packed = tokenize_and_pack(
        {"prompt": np.array([r["prompt"] for r in rows], dtype=object),
         "completion": np.array([r["completion"] for r in rows], dtype=object)},
        AutoTokenizer.from_pretrained(base), 64)
    torch.set_num_threads(WORKERS)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rates = []
    for epoch in range(EPOCHS):
        stats = train_epoch(model, optimizer, None,
                            iterate_batches(packed, PER_WORKER_BATCH * WORKERS, 0, epoch))
        rates.append(stats.tokens_per_s)
    return statistics.median(rates[1:])


def ray_train_tokens_per_s(stack) -> float:
    import mlflow
    from tandem.train.config import FinetuneConfig
    from tandem.train.run import run_finetune

    config = FinetuneConfig(epochs=EPOCHS, batch_size=PER_WORKER_BATCH, num_workers=WORKERS,
                            torch_threads=1, register_model=False, eval_max_examples=16)
    result = run_finetune(config, stack)
    history = mlflow.MlflowClient(stack.mlflow_url).get_metric_history(result.mlflow_run_id,
                                                                       "tokens_per_s")
    return statistics.median([m.value for m in sorted(history, key=lambda m: m.step)][1:])


@pytest.mark.integration
def test_ray_train_throughput_vs_single_process(stack):
    baseline = single_process_tokens_per_s(stack)
    distributed = ray_train_tokens_per_s(stack)
    ratio = distributed / baseline
    print(f"\ntraining tokens/s: single process (2 threads) {baseline:,.0f}; "
          f"Ray Train ({WORKERS} workers x 1 thread) {distributed:,.0f}; ratio {ratio:.2f} "
          "(target >= 0.85)")
    assert distributed > 0 and baseline > 0

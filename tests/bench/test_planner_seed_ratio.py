"""Predicted H200/H100 speedup for the seed's setup, against NVIDIA's "up to 1.9x".

Llama 2 70B, FP8, batch 64, 128 input / 2048 output tokens (TensorRT-LLM). Prints the
ratio three ways; run with `pytest tests/bench/test_planner_seed_ratio.py -s`.
"""

from tandem.catalog import load_catalog
from tandem.perf import build_replica_model, generation_throughput

BATCH, PROMPT, OUTPUT = 64, 128, 2048


def _per_gpu(catalog, gpu, tp, respect_kv):
    replica = build_replica_model(catalog, gpu, catalog.model("llama-2-70b"), "fp8", tp)
    batch = BATCH
    if respect_kv:
        batch = min(BATCH, replica.max_concurrent_seqs(PROMPT + OUTPUT))
    return generation_throughput(replica, batch, PROMPT, OUTPUT) / replica.tp, batch, replica.tp


def test_h200_over_h100_on_llama2_70b_fp8():
    catalog = load_catalog()
    rows = {
        "same TP=1, batch 64 (KV capacity ignored)": ("H200", 1, "H100", 1, False),
        "same TP=1, batch capped by KV capacity": ("H200", 1, "H100", 1, True),
        "planner's TP choice, batch capped by KV": ("H200", None, "H100", None, True),
        "same TP=2, batch 64": ("H200", 2, "H100", 2, True),
    }
    print()
    ratios = {}
    for label, (fast, fast_tp, slow, slow_tp, kv) in rows.items():
        a, batch_a, tp_a = _per_gpu(catalog, fast, fast_tp, kv)
        b, batch_b, tp_b = _per_gpu(catalog, slow, slow_tp, kv)
        ratios[label] = a / b
        print(f"{label}: H200 {a:,.0f} tok/s/GPU (TP{tp_a}, batch {batch_a}) / "
              f"H100 {b:,.0f} (TP{tp_b}, batch {batch_b}) = {a / b:.2f}x  (NVIDIA: 1.9x)")
    assert all(ratio > 1 for ratio in ratios.values())

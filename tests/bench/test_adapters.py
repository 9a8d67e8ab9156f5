"""LoRA adapters against merged copies, on one pool of the local stack, in one run.

1. **Swap**: serving a new fine-tune as an adapter version (`tandem promote` of the adapter:
   the route table changes, the engine stays) against serving it as a merged full copy
   (`tandem promote` of a full model: a new engine starts, traffic moves, the old engine is
   drained and deleted). Both idle; each clocked from the start of `swap` to the first
   answer from the new version, as a client polling every 0.1 s sees it.
2. **Throughput**: 16 streaming clients of 64 tokens (`stream_load.py`) on the base alone,
   on one adapter, and spread over four adapters, on the same engine. Goal: four adapters
   >= 0.8x one adapter's tokens/s (vLLM batches requests of different adapters together).
3. **Memory**: an adapter's weights against a merged copy's, on disk here, and for the
   catalog's llama-3.1-8b at rank 16 on q/k/v/o in bf16.

The adapters are random (PEFT init with B drawn from N(0, 0.5)): their values do not change
the cost of serving them. Run: `.venv/bin/python -m pytest -s tests/bench/test_adapters.py`
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LOAD = Path(__file__).with_name("stream_load.py")
BASE = "tandem-serve"
ADAPTERS = [f"bench-adapter-{i}" for i in range(4)]
MERGED = "bench-merged"
RANK = 8
TARGET_4_VS_1 = 0.8


def _adapter(base_dir: Path, out: Path, seed: int):
    """A random LoRA adapter on `base_dir` saved to `out`; returns the PEFT model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(
        r=RANK, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    model.save_pretrained(out)
    return model


def _register(stack, registered: int, workdir: Path) -> dict:
    """Four adapters on the served base, and two merged copies (of adapters 0 and 1)."""
    from tandem.registry import (
        Lineage,
        download_model,
        register_adapter,
        register_checkpoint,
    )
    from transformers import AutoTokenizer

    base_dir, _ = download_model(f"models:/{BASE}/{registered}", stack.models_dir / "registry",
                                 stack.mlflow_url)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    lineage = Lineage(adapter_base=f"models:/{BASE}/{registered}", trigger="bench")
    sizes = {}
    merged_versions = []
    for index, name in enumerate(ADAPTERS):
        out = workdir / name
        model = _adapter(base_dir, out, index)
        register_adapter(out, name, lineage, stack.mlflow_url)
        sizes["adapter"] = (out / "adapter_model.safetensors").stat().st_size
        if index < 2:
            merged_dir = workdir / f"merged-{index}"
            model.merge_and_unload().save_pretrained(merged_dir)
            tokenizer.save_pretrained(merged_dir)
            sizes["merged"] = (merged_dir / "model.safetensors").stat().st_size
            merged_versions.append(register_checkpoint(merged_dir, MERGED, Lineage(
                base_model=f"models:/{BASE}/{registered}", trigger="bench"), stack.mlflow_url))
    # a second version of adapter 0: adapter 1's weights (the swap's target)
    second = register_adapter(workdir / ADAPTERS[1], ADAPTERS[0], lineage, stack.mlflow_url)
    return {"sizes": sizes, "merged": merged_versions, "adapter_second": second}


def _config(model: str, adapters: list[str]):
    from tandem.serve.config import ServeAppConfig, load_serve_config

    data = load_serve_config(Path(__file__).resolve().parents[2] / "apps" / "serve.local.yaml",
                             {"model": model}).model_dump(mode="json")
    fast = data["pools"]["fast"]
    if adapters:
        fast["adapters"] = {"max_adapters": len(adapters), "max_rank": RANK}
    data["pools"] = {"fast": fast}
    data["adapters"] = [f"models:/{name}@champion" for name in adapters]
    return ServeAppConfig.model_validate(data)


def _load(url: str, models: list[str], api_key: str) -> dict:
    done = subprocess.run([sys.executable, str(LOAD), url, "--model", ",".join(models),
                           "--streams", "16", "--api-key", api_key],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _swap_seconds(stack, http, model: str, version: int) -> float:
    """From the start of `swap` to the first answer from `version`, polling every 0.1 s."""
    from tandem.serve.deploy import swap

    started = time.perf_counter()
    swap(model, version, stack, log=lambda line: None)
    while True:
        reply = http.post(f"{stack.api_url}/v1/completions", timeout=60, json={
            "model": model, "prompt": "translate: red cat =>", "max_tokens": 1})
        if reply.ok and reply.headers["x-tandem-model-version"] == str(version):
            return time.perf_counter() - started
        time.sleep(0.1)


def _lora_bytes_8b(rank: int) -> int:
    """bf16 bytes of a rank-`rank` adapter on q/k/v/o of the catalog's llama-3.1-8b."""
    from tandem.catalog import load_catalog

    shape = load_catalog().models["llama-3.1-8b"]
    hidden, kv = shape.hidden_size, shape.kv_heads * shape.head_dim
    per_layer = rank * ((hidden + hidden) * 2 + (hidden + kv) * 2)  # q, o; k, v
    return per_layer * shape.layers * 2


def test_adapters_swap_faster_share_one_engine_and_weigh_less(stack, registered, http,
                                                              tmp_path):
    from tandem.catalog import load_catalog
    from tandem.serve.deploy import deploy, shutdown

    made = _register(stack, registered, tmp_path)
    try:
        deploy(_config(f"models:/{BASE}@champion", ADAPTERS), stack, log=lambda line: None)
        rows = {"base alone": _load(stack.api_url, [BASE], http.api_key),
                "1 adapter": _load(stack.api_url, ADAPTERS[:1], http.api_key),
                "4 adapters": _load(stack.api_url, ADAPTERS, http.api_key)}
        adapter_swap_s = _swap_seconds(stack, http, ADAPTERS[0], made["adapter_second"])
        deploy(_config(f"models:/{MERGED}/{made['merged'][0]}", []), stack,
               log=lambda line: None)
        engine_swap_s = _swap_seconds(stack, http, MERGED, made["merged"][1])
    finally:
        shutdown(stack, log=lambda line: None)

    print("\nLoRA adapters on one engine (pool `fast`, 16 streams x 8 x 64 tokens):")
    for name, row in rows.items():
        print(f"  {name:<11} {row['tokens_per_s']:7.0f} tokens/s  TTFT p50 "
              f"{row['ttft_p50_ms']:6.1f} ms  client CPU {row['client_cpu_share']:.0%}")
    ratio = rows["4 adapters"]["tokens_per_s"] / rows["1 adapter"]["tokens_per_s"]
    print(f"  4 adapters vs 1: {ratio:.2f}x (goal >= {TARGET_4_VS_1}x); 1 adapter vs base "
          f"alone: {rows['1 adapter']['tokens_per_s'] / rows['base alone']['tokens_per_s']:.2f}x")
    print(f"swap to a new fine-tune, idle, to its first answer: adapter {adapter_swap_s:.2f} s, "
          f"merged copy (engine swap) {engine_swap_s:.1f} s: "
          f"{engine_swap_s / adapter_swap_s:.0f}x faster")
    sizes = made["sizes"]
    full_8b = load_catalog().models["llama-3.1-8b"].params_b * 1e9 * 2
    print(f"weights: adapter {sizes['adapter'] / 1e3:.0f} kB vs merged copy "
          f"{sizes['merged'] / 1e6:.2f} MB here ({sizes['adapter'] / sizes['merged']:.1%}); "
          f"llama-3.1-8b rank 16 q/k/v/o bf16: {_lora_bytes_8b(16) / 1e6:.0f} MB vs "
          f"{full_8b / 1e9:.1f} GB ({_lora_bytes_8b(16) / full_8b:.2%})")
    assert all(row["requests"] == 16 * 8 for row in rows.values())
    assert adapter_swap_s < engine_swap_s
    assert sizes["adapter"] < sizes["merged"]

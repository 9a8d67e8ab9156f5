"""Greedy batch inference on a vLLM engine inside a Ray task: how the rollout's offline gate
and the distillation job's quality scores answer prompts.

Neither the watcher nor a training worker loads a model itself: at 8B or 70B the model
would not fit beside them, and a Python-side `generate` would score a different numeric path
than the one served. The task starts one engine per base model (an adapter is a LoRA
request on its base's engine, so a champion and a challenger adapter share one engine),
answers every prompt greedily, and exits with the engine, so the caller's memory does not
grow with the model. On a GPU cluster the task asks for a GPU; on the local stack, one CPU.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINE_KV_CACHE_BYTES = 256 * 1024 * 1024  # a few thousand tokens of a small model: plenty
LORA_RANKS = (8, 16, 32, 64, 128, 256)  # what vLLM's max_lora_rank accepts


@dataclass(frozen=True)
class Candidate:
    """A model version to answer with: a full model, or an adapter on `base_dir`."""

    model_dir: str
    base_dir: str | None = None

    @property
    def engine_model(self) -> str:
        return self.base_dir or self.model_dir


def _lora_rank(adapter_dirs: Sequence[str]) -> int:
    rank = max(json.loads((Path(d) / "adapter_config.json").read_text())["r"]
               for d in adapter_dirs)
    return next((allowed for allowed in LORA_RANKS if allowed >= rank), LORA_RANKS[-1])


def _engine_kwargs(model: str, adapters: Sequence[str], prompt_tokens: int,
                   max_new_tokens: int) -> dict[str, Any]:
    from transformers import AutoConfig

    context = AutoConfig.from_pretrained(model).max_position_embeddings
    kwargs: dict[str, Any] = {
        "model": model, "dtype": "auto", "enforce_eager": True, "seed": 0,
        "max_model_len": min(context, prompt_tokens + max_new_tokens),
        "max_num_seqs": 64, "kv_cache_memory_bytes": ENGINE_KV_CACHE_BYTES}
    if adapters:
        kwargs.update(enable_lora=True, max_loras=len(adapters), max_cpu_loras=len(adapters),
                      max_lora_rank=_lora_rank(adapters))
    return kwargs


def answer_greedily(candidates: Sequence[Candidate], prompts: Sequence[str],
                    max_new_tokens: int, prompt_format: str = "text") -> list[list[str]]:
    """Each candidate's greedy answers to task `prompts`, rendered in `prompt_format` with
    the engine model's tokenizer, special tokens removed; runs where it is called
    (`answer_on_engine` runs it in a Ray task)."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from tandem.data.prompts import render_prompt

    answers: dict[Candidate, list[str]] = {}
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=True)
    for model in dict.fromkeys(c.engine_model for c in candidates):
        group = [c for c in candidates if c.engine_model == model]
        adapters = [c.model_dir for c in group if c.base_dir is not None]
        tokenizer = AutoTokenizer.from_pretrained(model)
        # token ids as training packs them: the template's own special tokens, nothing added
        token_ids = [{"prompt_token_ids": tokenizer(render_prompt(tokenizer, prompt, prompt_format),
                                                    add_special_tokens=False)["input_ids"]}
                     for prompt in prompts]
        longest = max(len(ids["prompt_token_ids"]) for ids in token_ids)
        engine = LLM(**_engine_kwargs(model, adapters, longest + 1, max_new_tokens))
        try:
            for candidate in group:
                lora = None
                if candidate.base_dir is not None:
                    index = adapters.index(candidate.model_dir) + 1
                    lora = LoRARequest(f"candidate-{index}", index, candidate.model_dir)
                outputs = engine.generate(token_ids, params, lora_request=lora, use_tqdm=False)
                answers[candidate] = [output.outputs[0].text for output in outputs]
        finally:
            del engine
    return [answers[candidate] for candidate in candidates]


def answer_on_engine(candidates: Sequence[Candidate], prompts: Sequence[str],
                     max_new_tokens: int, prompt_format: str = "text",
                     use_gpu: bool = False) -> list[list[str]]:
    """`answer_greedily` in a Ray task (Ray must be initialised): one CPU on the local stack,
    one GPU with `use_gpu`."""
    import ray

    if not prompts:
        return [[] for _ in candidates]
    task = ray.remote(answer_greedily).options(
        num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=0,
        runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": "nobind",
                                  "TOKENIZERS_PARALLELISM": "false"}})
    return ray.get(task.remote(list(candidates), list(prompts), max_new_tokens, prompt_format))

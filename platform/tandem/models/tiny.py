"""The tiny local base models and a tokenizer trained on the task's own text.

Two architectures, so nothing downstream is tied to one model class: `tiny` is a 2-layer
Llama (~0.4 M parameters), `tiny-qwen2` a 4-layer Qwen2 (~2.5 M parameters; q/k/v biases,
its own config class and vLLM model code). Both share the tokenizer.

Nothing is downloaded. The tokenizer is byte-level BPE (so vLLM's incremental
detokenizer restores spaces) trained until every task word is one token; the
model is a random-init causal LM saved with `save_pretrained`, which
is the same layout a real base model has, so training, registry and serving
code never special-case it.

Builds are idempotent and atomic (`tandem.models.build_cache`): the hash of the build spec
decides whether to rebuild.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.data.task import CHAT_TEMPLATE, corpus_lines
from tandem.errors import UserError
from tandem.models.build_cache import build_once, spec_hash

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
TOKENIZER_VOCAB_SIZE = 1024
MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
QWEN2_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
# spec -> (transformers architecture, its config); the spec is also the cache directory name
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny": ("llama", MODEL_CONFIG),
    "tiny-qwen2": ("qwen2", QWEN2_CONFIG),
}
BUILD_FORMAT = 1
TINY_SPEC = "tiny"
_CACHE_DIRS = {"tiny": "tiny-llama", "tiny-qwen2": "tiny-qwen2"}
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def build_spec(seed: int, architecture: str = TINY_SPEC) -> dict[str, Any]:
    """Everything that determines a tiny build; its hash decides whether to rebuild."""
    corpus = hashlib.sha256("\n".join(corpus_lines()).encode()).hexdigest()
    model_type, model_config = ARCHITECTURES[architecture]
    spec = {
        "format": BUILD_FORMAT,
        "seed": seed,
        "corpus_sha256": corpus,
        "tokenizer_vocab_size": TOKENIZER_VOCAB_SIZE,
        "special_tokens": [EOS_TOKEN, PAD_TOKEN],
        "chat_template": CHAT_TEMPLATE,
        "model": model_config,
    }
    if model_type != "llama":  # the Llama build's hash (and so every existing cache) stays as it was
        spec["model_type"] = model_type
    return spec


def train_tokenizer() -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` in which every task word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus_lines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _save_build(out_dir: Path, seed: int, architecture: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    tokenizer = train_tokenizer()
    token_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    model_type, model_config = ARCHITECTURES[architecture]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), dtype="float32",
                                  **model_config, **token_ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(**token_ids)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_tiny_base_model(out_dir: Path, seed: int = 0, architecture: str = TINY_SPEC) -> Path:
    """Build (or reuse) a tiny base model (`architecture`: a key of ARCHITECTURES) and its
    tokenizer in `out_dir`.

    Returns `out_dir` once it holds `config.json`, `model.safetensors`,
    tokenizer files and `generation_config.json`, loadable by
    `AutoModelForCausalLM`/`AutoTokenizer.from_pretrained` and by vLLM.
    """
    spec = build_spec(seed, architecture)
    return build_once(out_dir, spec_hash(spec),
                      lambda staging: _save_build(staging, seed, architecture), spec)


def resolve_base_model(spec: str, cache_dir: Path, allowed_dirs: Sequence[Path] = ()) -> Path | str:
    """Turn a base-model spec into something `from_pretrained` (and vLLM) can load.

    `"tiny"` or `"tiny-qwen2"` builds or reuses that tiny model under `cache_dir`; an existing
    local directory inside `cache_dir` or one of `allowed_dirs` (after resolving
    `..` and symlinks) is returned as a `Path`; any other `org/name` is a Hugging
    Face hub id, returned unchanged as a `str` for the hub to resolve. URLs are
    neither.

    Raises:
        UserError: the spec is a directory outside the allowed ones, looks like a
            local path that does not exist, or is neither a path nor a hub id.
    """
    if spec in ARCHITECTURES:
        return build_tiny_base_model(Path(cache_dir) / _CACHE_DIRS[spec], architecture=spec)
    local = Path(spec).expanduser()
    if local.is_dir():
        resolved = local.resolve()
        allowed = [Path(d).expanduser().resolve() for d in (cache_dir, *allowed_dirs)]
        if not any(resolved.is_relative_to(d) for d in allowed):
            raise UserError(
                f"base model {spec!r} is {resolved}, outside the directories models may be "
                f"loaded from ({', '.join(map(str, allowed))}); add its directory to "
                "TANDEM_MODEL_DIRS, or register it and use models:/NAME@ALIAS")
        return resolved
    if spec.startswith(("/", ".", "~")) or local.exists() or not _HUB_ID.match(spec):
        raise UserError(
            f"base model {spec!r} is not {' or '.join(map(repr, ARCHITECTURES))}, a local "
            "model directory, or a Hugging Face hub id like 'org/name'"
        )
    return spec

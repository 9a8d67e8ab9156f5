"""The tiny base model: one token per task word, prompt == chat template, reloadable, cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tandem.data.task import format_prompt, glossary
from tandem.errors import UserError
from tandem.models import build_cache, tiny
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_build_writes_a_complete_hf_model_dir(tiny_model_dir: Path) -> None:
    for name in build_cache.REQUIRED_FILES:
        assert (tiny_model_dir / name).is_file(), name
    marker = json.loads((tiny_model_dir / build_cache.BUILD_MARKER).read_text())
    assert marker["spec_hash"] == tiny.spec_hash(tiny.build_spec(seed=0))
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"] is not None
    assert not [p for p in tiny_model_dir.parent.iterdir() if p.name.startswith(".")]


def test_every_task_word_is_one_token(tokenizer) -> None:
    for word, target in glossary().items():
        for text in (f" {word}", f" {target}"):
            assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1, text


def test_tokenizer_round_trips_prompts_with_spaces(tokenizer) -> None:
    text = format_prompt(["red", "cat"]) + " mipu zemu"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    pieces = "".join(tokenizer.decode([i]) for i in ids)
    assert pieces == text


def test_special_tokens(tokenizer) -> None:
    assert tokenizer.eos_token == tiny.EOS_TOKEN and tokenizer.pad_token == tiny.PAD_TOKEN
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    assert tokenizer("red", add_special_tokens=True)["input_ids"] == tokenizer(
        "red", add_special_tokens=False
    )["input_ids"]


@pytest.mark.parametrize("words", [["red"], ["red", "cat", "sun"], ["star", "bread"]])
def test_chat_template_renders_the_training_prompt(tokenizer, words: list[str]) -> None:
    content = "translate: " + " ".join(words)
    for messages in (
        [{"role": "user", "content": content}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": content + " "}],
    ):
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        assert rendered == format_prompt(words)


def test_model_reloads_and_matches_config(tiny_model_dir: Path, tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    config = model.config
    assert config.num_hidden_layers == tiny.MODEL_CONFIG["num_hidden_layers"]
    assert config.vocab_size == len(tokenizer)
    assert config.tie_word_embeddings
    assert model.dtype == torch.float32
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(tokenizer))


def test_second_architecture_is_a_qwen2_of_a_few_million_parameters(tmp_path: Path,
                                                                      tiny_model_dir: Path):
    model_dir = tiny.resolve_base_model("tiny-qwen2", tmp_path)
    assert model_dir == tmp_path / "tiny-qwen2"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 5e6
    assert model.model.layers[0].self_attn.q_proj.bias is not None  # Qwen2's q/k/v biases
    shared = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert json.loads((model_dir / "tokenizer.json").read_text())["model"] == shared["model"]
    llama_spec, qwen_spec = tiny.build_spec(0), tiny.build_spec(0, "tiny-qwen2")
    assert "model_type" not in llama_spec  # the Llama cache keeps its hash
    assert tiny.spec_hash(llama_spec) != tiny.spec_hash(qwen_spec)


def test_build_is_idempotent(tiny_model_dir: Path) -> None:
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert tiny.build_tiny_base_model(tiny_model_dir) == tiny_model_dir
    assert weights.stat().st_mtime_ns == before


def test_stale_build_is_replaced(tmp_path: Path, tiny_model_dir: Path) -> None:
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / build_cache.BUILD_MARKER).write_text(json.dumps({"spec_hash": "old"}))
    assert tiny.build_tiny_base_model(target) == target
    assert build_cache.is_complete_build(target, tiny.spec_hash(tiny.build_spec(seed=0)))
    assert sorted(os.listdir(tmp_path)) == ["tiny"]
    same = (target / "model.safetensors").read_bytes()
    assert same == (tiny_model_dir / "model.safetensors").read_bytes(), "build is seeded"


def test_resolve_base_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    allowed = [tiny_model_dir.parent]
    assert tiny.resolve_base_model(str(tiny_model_dir), tmp_path, allowed) == tiny_model_dir
    assert tiny.resolve_base_model("meta-llama/Llama-3.1-8B", tmp_path) == (
        "meta-llama/Llama-3.1-8B"
    )
    with pytest.raises(UserError, match="Hugging Face hub id"):
        tiny.resolve_base_model(str(tmp_path / "missing"), tmp_path)
    with pytest.raises(UserError, match="Hugging Face hub id"):
        tiny.resolve_base_model("not a model id!", tmp_path)
    with pytest.raises(UserError, match="Hugging Face hub id"):
        tiny.resolve_base_model("https://example.com/model", tmp_path)


def test_a_local_base_model_must_live_in_an_allowed_directory(tmp_path: Path,
                                                             tiny_model_dir: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "link").symlink_to(tiny_model_dir, target_is_directory=True)
    outside = [str(tiny_model_dir),  # an absolute path elsewhere
               str(allowed / ".." / ".." / tiny_model_dir.relative_to(tmp_path.parent)),  # ../
               str(allowed / "link")]  # a symlink out of the allowed directory
    for spec in outside:
        with pytest.raises(UserError, match="TANDEM_MODEL_DIRS") as error:
            tiny.resolve_base_model(spec, tmp_path / "cache", [allowed])
        assert str(tiny_model_dir) in str(error.value), "the message names the real directory"
    inside = allowed / "model"
    inside.mkdir()
    assert tiny.resolve_base_model(str(allowed / "model" / ".." / "model"), tmp_path, [allowed]) == inside


def test_packed_position_ids_keep_examples_apart(tiny_model_dir: Path, tokenizer) -> None:
    import numpy as np
    from tandem.data.packing import tokenize_and_pack
    from tandem.data.task import format_completion

    words = [["red", "cat"], ["bread"]]
    batch = {
        "prompt": np.array([format_prompt(w) for w in words]),
        "completion": np.array([format_completion(w) for w in words]),
    }
    packed = tokenize_and_pack(batch, tokenizer, seq_len=32)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        row = model(
            input_ids=torch.from_numpy(packed["input_ids"]),
            position_ids=torch.from_numpy(packed["position_ids"]),
            use_cache=False,
        ).logits[0]
        second = batch["prompt"][1] + batch["completion"][1]
        alone_ids = tokenizer(second, add_special_tokens=False)["input_ids"]
        alone = model(torch.tensor([alone_ids])).logits[0]
    start = int(np.flatnonzero(packed["position_ids"][0] == 0)[1])
    torch.testing.assert_close(row[start : start + len(alone_ids)], alone)

"""LoRA runs save merged plain weights (what vLLM and the registry load) or, unmerged,
the adapter alone, which a resumed run trains on; bf16 autocast trains."""

import pytest
import torch
from pydantic import ValidationError
from tandem.train.config import FinetuneConfig, LoraSettings
from tandem.train.loop import ADAPTER_CONFIG, _load_model, _plain_model, _save_checkpoint
from tandem.train.steps import iterate_batches, train_epoch
from transformers import LlamaForCausalLM

from tests.unit.train.test_steps import micro_model, packed_rows


def test_lora_trains_only_adapters_and_merges_into_a_plain_model(tmp_path):
    torch.manual_seed(0)
    micro_model().save_pretrained(tmp_path / "base")
    config = FinetuneConfig(mode="lora", lora=LoraSettings(rank=4, target_modules=["q_proj", "v_proj"]))
    model = _load_model(tmp_path / "base", tmp_path / "base", config)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_epoch(model, optimizer, None, iterate_batches(packed_rows(16), 8, 0, 0))
    merged = _plain_model(model)
    assert isinstance(merged, LlamaForCausalLM)
    assert not any("lora_" in name for name, _ in merged.named_parameters())

    ids = torch.tensor([[1, 2, 3, 4]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)
        base = LlamaForCausalLM.from_pretrained(tmp_path / "base")
        assert not torch.allclose(base(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_an_unmerged_run_saves_the_adapter_alone_and_resumes_training_it(tmp_path):
    torch.manual_seed(0)
    micro_model().save_pretrained(tmp_path / "base")
    config = FinetuneConfig(mode="lora", base_model="models:/base@champion",
                            lora=LoraSettings(rank=4, merge=False, target_modules=["q_proj"]))
    model = _load_model(tmp_path / "base", tmp_path / "base", config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_epoch(model, optimizer, scheduler, iterate_batches(packed_rows(16), 8, 0, 0))

    class NoTokenizer:  # an adapter checkpoint carries no tokenizer (its base has it)
        def save_pretrained(self, directory):
            raise AssertionError("the adapter's tokenizer is its base's")

    _save_checkpoint(tmp_path / "ckpt", model, NoTokenizer(), optimizer, scheduler,
                     0, {}, adapter_only=True)
    saved = {path.name for path in (tmp_path / "ckpt" / "model").iterdir()}
    assert ADAPTER_CONFIG in saved and "config.json" not in saved
    assert not any(name.startswith("model") for name in saved)  # no full weights

    resumed = _load_model(tmp_path / "ckpt" / "model", tmp_path / "base", config)
    trainable = {name for name, p in resumed.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    ids = torch.tensor([[1, 2, 3, 4]])
    model.eval()
    resumed.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, resumed(input_ids=ids).logits,
                              atol=1e-5)


def test_an_unmerged_adapter_needs_a_registered_base():
    with pytest.raises(ValidationError, match="base_model must be a registered model"):
        FinetuneConfig(mode="lora", base_model="tiny", lora=LoraSettings(merge=False))
    assert FinetuneConfig(mode="lora", base_model="models:/b/1",
                          lora=LoraSettings(merge=False)).registers_adapter
    assert not FinetuneConfig(mode="full", base_model="tiny").registers_adapter


def test_bf16_autocast_trains():
    model = micro_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    stats = train_epoch(model, optimizer, None, iterate_batches(packed_rows(16), 8, 0, 0),
                        autocast_dtype=torch.bfloat16)
    assert stats.optimizer_steps == 2 and torch.isfinite(torch.tensor(stats.loss))
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_continuing_an_adapter_needs_an_unmerged_lora_run():
    with pytest.raises(ValidationError, match="lora.init_from continues a registered adapter"):
        FinetuneConfig(mode="lora", base_model="models:/b/1",
                       lora=LoraSettings(init_from="models:/a/1"))

"""LoRA runs save merged plain weights (what vLLM and the registry load), and
bf16 autocast trains."""

import torch
from tandem.train.config import FinetuneConfig, LoraSettings
from tandem.train.loop import _load_model, _plain_model
from tandem.train.steps import iterate_batches, train_epoch
from transformers import LlamaForCausalLM

from tests.unit.train.test_steps import micro_model, packed_rows


def test_lora_trains_only_adapters_and_merges_into_a_plain_model(tmp_path):
    torch.manual_seed(0)
    micro_model().save_pretrained(tmp_path / "base")
    config = FinetuneConfig(mode="lora", lora=LoraSettings(rank=4, target_modules=["q_proj", "v_proj"]))
    model = _load_model(tmp_path / "base", config)
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


def test_bf16_autocast_trains():
    model = micro_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    stats = train_epoch(model, optimizer, None, iterate_batches(packed_rows(16), 8, 0, 0),
                        autocast_dtype=torch.bfloat16)
    assert stats.optimizer_steps == 2 and torch.isfinite(torch.tensor(stats.loss))
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32

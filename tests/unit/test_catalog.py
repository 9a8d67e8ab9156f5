import json

import pytest
from tandem.catalog import (
    choose_tensor_parallel,
    kv_capacity_tokens,
    load_catalog,
    model_from_hf_config,
    resolve_precision,
)
from tandem.errors import UserError

MODELS = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b",
          "qwen2.5-7b", "qwen2.5-72b", "mistral-7b"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_ships_every_named_model_and_gpu(catalog):
    assert set(MODELS) <= set(catalog.models)
    assert {"H100", "H200", "A100-80G", "L4"} <= set(catalog.gpus)


def test_every_price_has_a_source_and_public_ones_a_url(catalog):
    for gpu in catalog.gpus.values():
        assert gpu.price_per_hour > 0 and gpu.price_source
    for name in ("A100-80G", "L4"):
        assert "https://" in catalog.gpus[name].price_source


def test_user_file_overrides_only_the_keys_it_sets(tmp_path, catalog):
    override = tmp_path / "prices.yaml"
    override.write_text("gpus:\n  L4:\n    price_per_hour: 0.5\n")
    merged = load_catalog(override)
    assert merged.gpus["L4"].price_per_hour == 0.5
    assert merged.gpus["L4"].vram_gb == catalog.gpus["L4"].vram_gb
    assert merged.gpus["H100"] == catalog.gpus["H100"]


def test_json_override_and_unknown_field_is_a_user_error(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"gpus": {"H100": {"price_per_hour": 3.0}}}))
    assert load_catalog(good).gpus["H100"].price_per_hour == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  H100:\n    colour: red\n")
    with pytest.raises(UserError, match="colour"):
        load_catalog(bad)


def test_unknown_names_are_user_errors(catalog):
    with pytest.raises(UserError, match="unknown model"):
        catalog.model("gpt-5")
    with pytest.raises(UserError, match="unknown GPU"):
        catalog.gpu("TPU")


def test_fp8_falls_back_on_a100_and_is_reported(catalog):
    choice = resolve_precision(catalog.gpu("A100-80G"), "fp8")
    assert choice.effective in {"bf16", "fp16"} and "A100" in choice.note
    assert resolve_precision(catalog.gpu("H100"), "fp8").effective == "fp8"
    assert resolve_precision(catalog.gpu("H100"), "fp8").note == ""


def test_fp8_halves_weight_and_kv_bytes(catalog):
    model = catalog.model("llama-3.1-8b")
    assert model.weight_bytes("fp8") * 2 == pytest.approx(model.weight_bytes("fp16"))
    assert model.kv_bytes_per_token("fp8") * 2 == model.kv_bytes_per_token("fp16")
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 dims x K,V x 2 bytes
    assert model.kv_bytes_per_token("fp16") == 32 * 8 * 128 * 2 * 2


def test_tensor_parallel_is_the_smallest_degree_that_fits(catalog):
    h100, h200 = catalog.gpu("H100"), catalog.gpu("H200")
    assert choose_tensor_parallel(h100, catalog.model("llama-3.1-8b"), "fp16") == 1
    tp = choose_tensor_parallel(h100, catalog.model("llama-3.1-70b"), "fp16")
    assert tp is not None and tp > 1
    assert kv_capacity_tokens(h100, catalog.model("llama-3.1-70b"), "fp16", tp // 2) < 32_768
    assert choose_tensor_parallel(h200, catalog.model("llama-3.1-70b"), "fp8") == 1


def test_profile_derived_from_hf_config_matches_the_catalog(tmp_path, catalog):
    config = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
              "max_position_embeddings": 131072, "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    derived = model_from_hf_config(path, name="mine")
    shipped = catalog.model("llama-3.1-8b")
    assert derived.params_b == pytest.approx(shipped.params_b, rel=0.01)
    assert derived.kv_bytes_per_token("fp16") == shipped.kv_bytes_per_token("fp16")
    assert catalog.model(str(tmp_path)).head_dim == 128


def test_hf_config_missing_field_is_a_user_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(UserError, match="missing or bad field"):
        model_from_hf_config(path)

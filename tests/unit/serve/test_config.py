"""Serve configs: the shipped YAMLs validate, say how to launch, and the schema is strict."""

from pathlib import Path

import pytest
import yaml
from tandem.errors import UserError
from tandem.serve.config import ServeAppConfig, load_serve_config

REPO = Path(__file__).resolve().parents[3]
SHIPPED = sorted((REPO / "apps").glob("serve.*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_serve_config_validates(path):
    config = load_serve_config(path)
    assert path.read_text().startswith("# Launch: tandem deploy --config apps/")
    assert config.model.startswith("models:/tandem-tiny@")
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def test_local_pools_differ_for_real_and_in_price():
    config = load_serve_config(REPO / "apps" / "serve.local.yaml")
    fast, cheap = config.pools["fast"], config.pools["cheap"]
    assert fast.price_per_hour > cheap.price_per_hour
    assert fast.engine.max_num_seqs > cheap.engine.max_num_seqs
    assert all(pool.is_cpu and pool.engine.kv_cache_memory_bytes for pool in config.pools.values())


def test_gpu_pools_match_cluster_gpus():
    config = load_serve_config(REPO / "apps" / "serve.gpu.yaml")
    assert {pool.gpu for pool in config.pools.values()} == {"H100", "H200", "A100-80G", "L4"}
    assert config.pools["a100"].engine.quantization is None  # no fp8 on A100


def test_unknown_key_is_a_user_error(tmp_path):
    text = (REPO / "apps" / "serve.local.yaml").read_text().replace("max_num_seqs: 4", "max_seqs: 4")
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="max_seqs: unknown key"):
        load_serve_config(path)


def test_cpu_pool_needs_kv_cache_size():
    with pytest.raises(ValueError, match="kv_cache_memory_bytes"):
        ServeAppConfig.model_validate({"pools": {"p": {"price_per_hour": 1}}})


@pytest.mark.parametrize("source", ["/models/llama", "../../etc", "models:/..@champion",
                                    "models:/../x/1", "https://evil.example/model",
                                    "hf://meta-llama/Llama-3.1-8B", "models:/a/b/c@champion"])
def test_a_model_source_must_be_a_registry_uri(tmp_path, source):
    path = tmp_path / "serve.yaml"
    path.write_text((REPO / "apps" / "serve.local.yaml").read_text())
    with pytest.raises(UserError, match="not a registry URI"):
        load_serve_config(path, {"model": source})


def test_engine_settings_cannot_turn_on_remote_code(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text((REPO / "apps" / "serve.local.yaml").read_text().replace(
        "max_num_seqs: 4", "max_num_seqs: 4\n            trust_remote_code: true"))
    with pytest.raises(UserError, match="trust_remote_code: unknown key"):
        load_serve_config(path)

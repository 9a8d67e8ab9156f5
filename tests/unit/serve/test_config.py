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
    assert config.model.endswith("@champion")  # the alias `tandem promote` moves
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


def test_local_pools_differ_for_real_and_in_price():
    config = load_serve_config(REPO / "apps" / "serve.local.yaml")
    fast, cheap = config.pools["fast"], config.pools["cheap"]
    assert fast.price_per_hour > cheap.price_per_hour
    assert fast.engine.max_num_seqs > cheap.engine.max_num_seqs
    assert all(pool.is_cpu and pool.engine.kv_cache_memory_bytes for pool in config.pools.values())


def test_unknown_key_is_a_user_error(tmp_path):
    text = (REPO / "apps" / "serve.local.yaml").read_text().replace("max_num_seqs: 4", "max_seqs: 4")
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="max_seqs: unknown key"):
        load_serve_config(path)


@pytest.mark.parametrize("make, message", [
    (lambda path: path.mkdir(), "cannot read the Serve config (Is a directory)"),
    (lambda path: path.write_text("- a\n- b\n"), "a Serve config is a mapping"),
    (lambda path: path.write_text("applications: 3\n"),
     "`applications` of the Serve config must be a list of mappings"),
    (lambda path: path.write_text("applications: [a]\n"),
     "`applications` of the Serve config must be a list of mappings"),
    (lambda path: path.write_text("applications: [{import_path: x:build_app, args: [1]}]\n"),
     "the `args` of the build_app application must be a mapping"),
])
def test_deploy_refuses_a_config_that_is_a_directory_or_a_list(tmp_path, monkeypatch, capsys,
                                                              make, message):
    from tandem.cli import main

    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    path = tmp_path / "serve.yaml"
    make(path)
    assert main(["deploy", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: {message}" in err[0]


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


def test_a_gpu_pool_without_a_price_is_priced_from_the_catalog():
    from tandem.catalog import load_catalog

    catalog = load_catalog()
    config = ServeAppConfig.model_validate({"model_profile": "llama-3.1-70b", "pools": {
        "h100": {"gpu": "H100", "engine": {"tensor_parallel_size": 2}},
        "l4": {"gpu": "L4"},
        "own": {"gpu": "L4", "price_per_hour": 0.5}}})
    assert config.pools["h100"].price_per_hour == pytest.approx(2 * catalog.gpu("H100").price_per_hour)
    assert config.pools["l4"].price_per_hour == pytest.approx(catalog.gpu("L4").price_per_hour)
    assert config.pools["own"].price_per_hour == 0.5  # an explicit price still wins
    again = ServeAppConfig.model_validate(config.model_dump(mode="json"))  # as the ingress gets it
    assert again.pools["h100"].price_per_hour == config.pools["h100"].price_per_hour
    assert config.pools["h100"].engine.engine_kwargs()["tensor_parallel_size"] == 2


def test_a_price_is_required_where_the_catalog_has_none(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text((REPO / "apps" / "serve.gpu.yaml").read_text().replace("gpu: L4", "gpu: B300"))
    with pytest.raises(UserError, match=r"pools\.l4: .*GPU 'B300' is not in the catalog.*price_per_hour"):
        load_serve_config(path)
    cpu = {"pools": {"p": {"engine": {"kv_cache_memory_bytes": 1 << 27}}}, "routing_policy": "round-robin"}
    with pytest.raises(ValueError, match="a cpu pool needs price_per_hour"):
        ServeAppConfig.model_validate(cpu)


@pytest.mark.parametrize("pool, message", [
    ({"price_per_hour": 1, "engine": {"kv_cache_memory_bytes": 1 << 27, "tensor_parallel_size": 2}},
     "tensor_parallel_size must be 1 on a cpu pool"),
    ({"gpu": "H100", "node": "fast"}, "`node` applies to cpu pools only"),
    ({"price_per_hour": 1, "node": "a b", "engine": {"kv_cache_memory_bytes": 1 << 27}},
     "node 'a b': letters, digits"),
])
def test_pool_settings_must_fit_the_hardware(pool, message):
    with pytest.raises(ValueError, match=message):
        ServeAppConfig.model_validate({"pools": {"p": pool}, "routing_policy": "round-robin"})

"""`tandem deploy --local`: a GPU config's pools placed on the local stack's CPU pool nodes."""

from pathlib import Path

import pytest
from tandem.catalog import load_catalog
from tandem.errors import UserError
from tandem.routing import RoutingConfig
from tandem.serve.config import ServeAppConfig, load_serve_config
from tandem.serve.local import local_node_pools, place_on_local_nodes
from tandem.serve.pools import llm_config
from tandem.settings import load_settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def nodes():
    return local_node_pools(load_settings({"TANDEM_PROJECT_DIR": str(REPO)}))


@pytest.fixture
def gpu_config():
    """Three GPU pools: L4 at the catalog price, H100 at TP 2, A100 at its own price."""
    return ServeAppConfig.model_validate({"model_profile": "llama-3.1-8b", "pools": {
        "l4": {"gpu": "L4", "num_replicas": 4, "engine": {"quantization": "fp8"}},
        "h100": {"gpu": "H100", "autoscaling": {"min_replicas": 1, "max_replicas": 3},
                 "engine": {"tensor_parallel_size": 2, "max_model_len": 8192}},
        "a100": {"gpu": "A100-80G", "price_per_hour": 3.0}}})


def test_local_nodes_take_the_local_configs_pools():
    nodes = local_node_pools(load_settings({"TANDEM_PROJECT_DIR": str(REPO)}))
    local = load_serve_config(REPO / "apps" / "serve.local.yaml")
    assert nodes == {"fast": local.pools["fast"], "cheap": local.pools["cheap"]}
    with pytest.raises(UserError, match="no cpu pool on local node.*gpu-box"):
        local_node_pools(load_settings({"TANDEM_PROJECT_DIR": str(REPO),
                                        "TANDEM_LOCAL_POOLS": "fast,gpu-box"}))


def test_three_gpu_pools_share_two_local_nodes(gpu_config, nodes):
    local, notes = place_on_local_nodes(gpu_config, nodes)
    assert list(local.pools) == ["l4", "h100", "a100"]  # names kept, in the config's order
    assert all(pool.is_cpu and pool.num_replicas == 1 and pool.autoscaling is None
               for pool in local.pools.values())
    prices = {name: pool.price_per_hour for name, pool in local.pools.items()}
    assert prices == {name: pool.price_per_hour for name, pool in gpu_config.pools.items()}
    assert prices["a100"] == 3.0
    assert prices["h100"] == pytest.approx(2 * load_catalog().gpu("H100").price_per_hour)
    # costliest first: h100 (TP 2) on fast, a100 on cheap, then l4 back on fast
    assert {name: pool.node for name, pool in local.pools.items()} == {
        "h100": "fast", "a100": "cheap", "l4": "fast"}
    for name, pool in local.pools.items():
        node = nodes[pool.node]
        assert pool.engine == node.engine  # float32, small context, KV size, the node's core
        assert pool.prior == node.prior
        assert pool.engine.tensor_parallel_size == 1 and pool.engine.quantization is None
    assert local.routing_config().tiers == RoutingConfig.local_cpu_defaults().tiers
    assert "local node fast is shared by pools h100, l4 (3 pools, 2 local nodes)" in notes
    assert any(note.startswith("pool h100: 1-3 x H100 (TP 2) -> 1 cpu replica on local node fast")
               for note in notes)
    assert len(notes) == 4


def test_a_placed_pool_runs_on_its_node(gpu_config, nodes):
    local, _ = place_on_local_nodes(gpu_config, nodes)
    config = llm_config("tandem-tiny", "/m", "l4", local.pools["l4"])
    assert config.placement_group_config == {"bundles": [{"CPU": 1, "pool:fast": 1}]}
    assert config.runtime_env["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] == \
        nodes["fast"].engine.cpu_threads
    assert config.engine_kwargs["tensor_parallel_size"] == 1


def test_a_config_that_fits_the_nodes_shares_none(nodes):
    local_yaml = load_serve_config(REPO / "apps" / "serve.local.yaml")
    config = ServeAppConfig.model_validate({"model_profile": "llama-3.1-8b", "pools": {
        "h100": {"gpu": "H100"}, "cheap": local_yaml.pools["cheap"].model_dump()}})
    local, notes = place_on_local_nodes(config, nodes)
    assert local.pools["cheap"] == local_yaml.pools["cheap"]
    assert local.pools["h100"].node == "fast"
    assert not any("shared" in note for note in notes)
    assert "pool cheap: already a cpu pool, kept as it is" in notes


def test_no_local_nodes_is_a_user_error(gpu_config):
    with pytest.raises(UserError, match="no local pool nodes"):
        place_on_local_nodes(gpu_config, {})

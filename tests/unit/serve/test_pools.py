"""Pool -> LLMConfig: CPU pools pin to their node, GPU pools ask for their accelerator."""

import pytest
from tandem.catalog import load_catalog
from tandem.serve.config import PoolConfig
from tandem.serve.pools import llm_config, route_for


def test_cpu_pool_pins_to_its_node_resource():
    pool = PoolConfig.model_validate({"price_per_hour": 0.1, "engine": {
        "kv_cache_memory_bytes": 1 << 27, "max_num_seqs": 4, "cpu_threads": "1"}})
    config = llm_config("tandem-tiny", "/m", "cheap", pool)
    assert config.placement_group_config == {"bundles": [{"CPU": 1, "pool:cheap": 1}]}
    assert config.engine_kwargs["max_num_seqs"] == 4
    assert config.runtime_env["env_vars"]["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert config.model_id == "tandem-tiny"


def test_gpu_pool_uses_accelerator_type_and_autoscaling():
    pool = PoolConfig.model_validate({"gpu": "H100", "price_per_hour": 2.1,
                                      "autoscaling": {"min_replicas": 0, "max_replicas": 3},
                                      "engine": {"quantization": "fp8"}})
    config = llm_config("tandem-tiny", "/m", "h100", pool)
    assert config.accelerator_type == "H100"
    assert config.engine_kwargs["quantization"] == "fp8"
    route = route_for("tandem-tiny", 3, "h100", pool)
    assert route.app.startswith("tandem-tiny-h100-v3-") and route.deployment == "h100-v3:tandem-tiny"
    resized = pool.model_copy(update={"num_replicas": pool.num_replicas + 1})
    assert route_for("tandem-tiny", 3, "h100", resized).app != route.app  # a changed pool redeploys
    assert route_for("tandem-tiny", 3, "h100", pool).app == route.app
    assert config.deployment_config["autoscaling_config"]["min_replicas"] == 0
    assert "cold_start_s" not in config.deployment_config["autoscaling_config"]  # the router's
    assert route.cold_start_s == 120.0 and route.replicas == 1  # may be cold
    warm = pool.model_copy(update={"autoscaling": pool.autoscaling.model_copy(
        update={"min_replicas": 1})})
    assert route_for("tandem-tiny", 3, "h100", warm).cold_start_s is None  # never cold


def test_engines_skip_rays_download_step_only_for_a_model_on_disk(tmp_path):
    import asyncio

    from ray.llm._internal.common.utils.import_utils import load_class

    pool = PoolConfig.model_validate({"gpu": "L4", "price_per_hour": 0.8})
    for source, runs_download in ((str(tmp_path), False), ("s3://bucket/model", True),
                                  (str(tmp_path / "missing"), True)):
        config = llm_config("tandem-tiny", source, "cheap", pool)
        callback = load_class(config.callback_config.callback_class)(llm_config=config)
        asyncio.run(callback.on_before_node_init())
        assert callback.ctx.run_init_node is runs_download, source


def test_a_cpu_pool_can_run_on_another_pools_node():
    pool = PoolConfig.model_validate({"price_per_hour": 2.1, "node": "fast", "engine": {
        "kv_cache_memory_bytes": 1 << 27, "cpu_threads": "0"}})
    config = llm_config("tandem-tiny", "/m", "h100", pool)
    assert config.placement_group_config == {"bundles": [{"CPU": 1, "pool:fast": 1}]}
    assert config.runtime_env["env_vars"] == {"TANDEM_POOL": "h100", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    assert route_for("tandem-tiny", 1, "h100", pool).price_per_hour == 2.1


def test_a_tensor_parallel_gpu_pool_asks_for_that_many_gpus():
    pool = PoolConfig.model_validate({"gpu": "H100", "engine": {"tensor_parallel_size": 2}})
    config = llm_config("tandem-tiny", "/m", "h100", pool)
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    h100 = load_catalog().gpu("H100").price_per_hour
    assert route_for("tandem-tiny", 1, "h100", pool).price_per_hour == pytest.approx(2 * h100)

"""Pool -> LLMConfig: CPU pools pin to their node, GPU pools ask for their accelerator."""

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

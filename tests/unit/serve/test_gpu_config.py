"""apps/serve.gpu.yaml as Ray Serve LLM gets it: every GPU pool's LLMConfig and deployment
options, built here without a Ray cluster, a GPU or a download."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from tandem.catalog import load_catalog
from tandem.serve.config import ServeAppConfig, load_serve_config, profile_conflict, tandem_args
from tandem.serve.pools import PREFIX_CACHE_ROUTER, llm_config

REPO = Path(__file__).resolve().parents[3]
GPU_YAML = REPO / "apps" / "serve.gpu.yaml"
CONFIG = load_serve_config(GPU_YAML)
TENSOR_PARALLEL = ServeAppConfig.model_validate({"model": "models:/support-llama-70b@champion",
                                     "model_profile": "llama-3.1-70b", "pools": {
    "h100": {"gpu": "H100", "autoscaling": {"min_replicas": 1, "max_replicas": 2},
             "engine": {"dtype": "bfloat16", "quantization": "fp8", "tensor_parallel_size": 2}},
    "a100": {"gpu": "A100-80G", "engine": {"dtype": "bfloat16", "tensor_parallel_size": 4}}}})
POOLS = {**{f"serve.gpu.yaml:{name}": pool for name, pool in CONFIG.pools.items()},
         **{f"tp:{name}": pool for name, pool in TENSOR_PARALLEL.pools.items()}}


@pytest.fixture
def offline_ray(monkeypatch):
    """Ray Serve LLM's deployment options merge in the driver's runtime env, which would start
    or join a Ray cluster: here that env is empty and any `ray.init` fails the test."""
    import ray

    def no_cluster(*args, **kwargs):
        raise AssertionError("a unit test must not start or join a Ray cluster")

    monkeypatch.setattr(ray, "init", no_cluster)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(runtime_env={}))


def deployment_options(name: str, pool) -> dict:
    """What `build_pool_application` hands `serve.deployment` (before Serve's defaults)."""
    config = llm_config("support-llama-8b", "/models/support-llama-8b", name, pool)
    return config.server_cls.get_deployment_options(config)


def test_the_router_is_given_the_profile_of_the_model_served():
    assert CONFIG.model == "models:/support-llama-8b@champion"
    assert CONFIG.model_profile == "llama-3.1-8b"
    assert all(not pool.is_cpu and pool.prior is None for pool in CONFIG.pools.values())


def test_the_proxy_binds_loopback_unless_told_otherwise():
    assert yaml.safe_load(GPU_YAML.read_text())["http_options"]["host"] == "127.0.0.1"


def test_gpu_pools_match_cluster_gpus():
    assert {pool.gpu for pool in CONFIG.pools.values()} == {"H100", "H200", "A100-80G", "L4"}
    assert CONFIG.pools["a100"].engine.quantization is None  # no fp8 on A100


def test_a_pool_without_a_price_is_priced_from_the_catalog_times_tp():
    raw = tandem_args(yaml.safe_load(GPU_YAML.read_text()))["pools"]
    catalog = load_catalog()
    unpriced = [name for name, pool in raw.items() if "price_per_hour" not in pool]
    assert unpriced, "apps/serve.gpu.yaml should take its prices from the catalog"
    for name in unpriced:
        pool = CONFIG.pools[name]
        assert pool.price_per_hour == pytest.approx(
            catalog.gpu(pool.gpu).price_per_hour * pool.engine.tensor_parallel_size, rel=1e-12)
    for name, pool in raw.items():
        if "price_per_hour" in pool:  # an explicit override wins
            assert CONFIG.pools[name].price_per_hour == pool["price_per_hour"]


@pytest.mark.parametrize("name", POOLS)
def test_each_gpu_pool_asks_ray_serve_llm_for_its_gpus(name, offline_ray):
    pool, pool_name = POOLS[name], name.split(":")[1]
    config = llm_config("support-llama-8b", "/models/support-llama-8b", pool_name, pool)
    assert config.accelerator_type == pool.gpu
    tp = pool.engine.tensor_parallel_size
    gpu_tag = f"accelerator_type:{pool.gpu}"
    engine = config.get_engine_config()
    assert engine.placement_bundles == [{"GPU": 1, gpu_tag: 0.001}] * tp  # one bundle per GPU
    options = deployment_options(pool_name, pool)
    bundles = options["placement_group_bundles"]
    assert len(bundles) == tp and all(bundle["GPU"] == 1 and gpu_tag in bundle for bundle in bundles)
    assert bundles[0]["CPU"] == 1  # the replica actor shares the first GPU's bundle
    assert options["placement_group_strategy"] == "PACK"
    assert config.engine_kwargs.get("tensor_parallel_size", 1) == tp


@pytest.mark.parametrize("name", POOLS)
def test_fp8_only_where_the_pool_asks_and_the_gpu_has_it(name):
    pool = POOLS[name]
    kwargs = llm_config("support-llama-8b", "/m", "p", pool).engine_kwargs
    has_fp8 = "fp8" in load_catalog().gpu(pool.gpu).tflops
    assert kwargs.get("quantization") == pool.engine.quantization
    assert kwargs.get("quantization") != "fp8" or has_fp8
    if pool.gpu == "A100-80G":
        assert "quantization" not in kwargs


@pytest.mark.parametrize("name", POOLS)
def test_the_prefix_cache_router_only_where_a_pool_asks(name, offline_ray):
    pool, pool_name = POOLS[name], name.split(":")[1]
    options = deployment_options(pool_name, pool)
    if pool.replica_router == "prefix-cache":
        router = options["request_router_config"]
        assert router["request_router_class"] == PREFIX_CACHE_ROUTER
        assert router["request_router_kwargs"]["do_eviction"] is True
    else:
        assert "request_router_config" not in options  # Serve's default: power of two choices


def test_the_shipped_gpu_config_uses_the_prefix_cache_router_on_a_multi_replica_pool():
    routed = [pool for pool in CONFIG.pools.values() if pool.replica_router == "prefix-cache"]
    assert routed and all(pool.max_replicas > 1 for pool in routed)


def test_the_prefix_cache_router_class_is_ray_serve_llms():
    import importlib

    from ray.serve.config import RequestRouterConfig
    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    module, _, name = PREFIX_CACHE_ROUTER.rpartition(".")
    assert getattr(importlib.import_module(module), name) is PrefixCacheAffinityRouter
    RequestRouterConfig(request_router_class=PREFIX_CACHE_ROUTER)  # imports and pickles it


@pytest.mark.parametrize("pool", [
    {"gpu": "H100", "replica_router": "prefix-cache"},
    {"gpu": "H100", "replica_router": "prefix-cache", "autoscaling": {"max_replicas": 1}},
])
def test_a_single_replica_pool_cannot_ask_for_the_prefix_cache_router(pool):
    with pytest.raises(ValueError, match="prefix-cache needs more than one replica"):
        ServeAppConfig.model_validate({"pools": {"p": pool}, "routing_policy": "round-robin"})
    ServeAppConfig.model_validate({"pools": {"p": {**pool, "num_replicas": 2, "autoscaling": None}},
                                   "routing_policy": "round-robin"})


PROFILES = list(load_catalog().models)


@pytest.mark.parametrize("model, profile, conflict", [
    ("support-llama-8b", "llama-3.1-8b", None),
    ("Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b", None),
    ("tandem-tiny", "llama-3.1-8b", None),  # names nothing: cannot be checked
    ("support-8b", "llama-3.1-8b", None),
    ("qwen2.5-7b-support", "qwen2.5-7b", None),
    ("support-llama-70b", "llama-3.1-8b", "names a 70B model"),
    ("support-qwen-7b", "llama-3.1-8b", "names the qwen family"),
    ("mistral7b-chat", "llama-2-7b", "names the mistral family"),
    ("support-llama-1.5b", "llama-3.1-8b", "names a 1.5B model"),
])
def test_a_model_named_for_another_profile_is_caught(model, profile, conflict):
    assert profile_conflict(model, profile, PROFILES) == conflict


def test_a_config_serving_a_model_named_for_another_profile_is_rejected(tmp_path):
    from tandem.errors import UserError

    path = tmp_path / "serve.yaml"
    path.write_text(GPU_YAML.read_text())
    with pytest.raises(UserError, match="names a 70B model but model_profile is 'llama-3.1-8b'"):
        load_serve_config(path, {"model": "models:/support-llama-70b@champion"})
    assert load_serve_config(path, {"model": "models:/support-llama-70b@champion",
                                    "model_profile": "llama-3.1-70b"}).model_profile == "llama-3.1-70b"

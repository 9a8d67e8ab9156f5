"""Pools as Ray Serve LLM deployments: one LLMServer deployment per (pool, model version).

Each (pool, version) pair is its own Serve application (`<model>-<pool>-v<version>-<config hash>`),
so a new version can start beside the old one and the old one can be deleted alone:
that is what makes the blue/green swap in `tandem.serve.deploy` possible without
redeploying the ingress.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tandem.serve.config import PoolConfig

PREFIX_CACHE_ROUTER = "ray.serve.llm.request_router.PrefixCacheAffinityRouter"


@dataclass(frozen=True)
class Route:
    """Where the ingress sends one pool's traffic for one model."""

    pool: str
    version: int
    app: str
    deployment: str
    gpu: str
    price_per_hour: float
    replicas: int
    # with autoscaling down to 0 replicas: the pool may be cold, and a cold start's expected length
    cold_start_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_app_name(model_name: str, pool: str, version: int, spec: PoolConfig) -> str:
    """`<model>-<pool>-v<version>-<config hash>`: a changed pool config is a new application,
    so `tandem deploy` starts it beside the old one instead of keeping the stale one (the
    router's `prior` is not part of the engine, so changing it restarts nothing)."""
    engine_side = spec.model_copy(update={"prior": None})
    return f"{model_name}-{pool}-v{version}-{engine_side.config_hash()[:6]}"


def deployment_name(model_name: str, pool: str, version: int) -> str:
    return f"{pool}-v{version}:{model_name}"


def llm_config(model_name: str, model_dir: Path | str, pool_name: str, pool: PoolConfig):
    """The `ray.serve.llm.LLMConfig` of one pool serving `model_dir` as `model_name`."""
    from ray.serve.llm import LLMConfig

    from tandem.serve.engine_start import CALLBACK_CLASS
    from tandem.serve.pool_server import PoolServer
    from tandem.settings import pool_resource

    deployment: dict[str, Any] = {"max_ongoing_requests": pool.max_ongoing_requests}
    if pool.autoscaling is not None:
        deployment["autoscaling_config"] = pool.autoscaling.serve_options()
    else:
        deployment["num_replicas"] = pool.num_replicas
        deployment["autoscaling_config"] = None
    if pool.replica_router == "prefix-cache":
        # eviction on: its prefix tree (one per deployment) would otherwise grow with every prompt
        deployment["request_router_config"] = {"request_router_class": PREFIX_CACHE_ROUTER,
                                               "request_router_kwargs": {"do_eviction": True}}
    env = {"TANDEM_POOL": pool_name}
    engine_kwargs = pool.engine.engine_kwargs()
    if pool.adapters is not None:
        engine_kwargs.update(pool.adapters.engine_kwargs())
    kwargs: dict[str, Any] = {
        "model_loading_config": {"model_id": model_name, "model_source": str(model_dir)},
        "engine_kwargs": engine_kwargs,
        "deployment_config": deployment,
        "log_engine_metrics": True,
        "callback_config": {"callback_class": CALLBACK_CLASS},
        "server_cls": PoolServer,
    }
    if pool.adapters is not None:  # PoolServer loads them from the registry (tandem.serve.adapters)
        kwargs["lora_config"] = {"max_num_adapters_per_replica": pool.adapters.max_adapters}
    if pool.is_cpu:
        kwargs["accelerator_config"] = {"kind": "cpu"}
        node = pool.node or pool_name
        kwargs["placement_group_config"] = {"bundles": [{"CPU": 1, pool_resource(node): 1}]}
        if pool.engine.cpu_threads:
            env["VLLM_CPU_OMP_THREADS_BIND"] = pool.engine.cpu_threads
    else:
        kwargs["accelerator_type"] = pool.gpu
    kwargs["runtime_env"] = {"env_vars": env}
    return LLMConfig(**kwargs)


def build_pool_application(model_name: str, model_dir: Path | str, version: int,
                           pool_name: str, pool: PoolConfig):
    """One pool's LLMServer deployment for one model version, as a Serve application."""
    from ray.serve.llm import build_llm_deployment

    config = llm_config(model_name, model_dir, pool_name, pool)
    return build_llm_deployment(config, name_prefix=f"{pool_name}-v{version}:")


def route_for(model_name: str, version: int, pool_name: str, pool: PoolConfig,
              app: str | None = None) -> Route:
    """The route to one pool; `app` names the application holding it when that is not the
    pool's own (the ingress application, when `serve deploy` composes everything in one)."""
    scaling = pool.autoscaling
    replicas = scaling.min_replicas if scaling else pool.num_replicas
    return Route(pool=pool_name, version=version,
                 app=app or pool_app_name(model_name, pool_name, version, pool),
                 deployment=deployment_name(model_name, pool_name, version),
                 gpu=pool.gpu, price_per_hour=pool.price_per_hour, replicas=max(1, replicas),
                 cold_start_s=scaling.cold_start_s if scaling and replicas == 0 else None)

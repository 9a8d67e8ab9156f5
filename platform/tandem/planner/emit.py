"""A planned fleet as a Serve config that `tandem deploy` runs.

The planner decides replicas per GPU type; serving needs that decision as pools. One pool
per GPU type, its engine set up as the plan's replica model assumed (tensor parallel
degree, precision, batch size, context). The file carries no prices: a GPU pool is priced
from the catalog through its `gpu` (`tandem.serve.config`), so the plan and the router
never disagree on what a GPU costs. Plain data out, no import of the serving package: the
planner runs on a laptop without Ray.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tandem.catalog import GPU_MEMORY_UTILIZATION
from tandem.errors import UserError
from tandem.perf import ReplicaModel

DEFAULT_MODEL_URI = "models:/tandem-tiny@champion"
INGRESS_IMPORT_PATH = "apps.llm_app:build_app"  # the Tandem application of apps/serve.*.yaml
API_PORT = 8000  # as apps/serve.gpu.yaml: the cluster's API port (HAProxy's frontend)
_DTYPES = {"fp8": "bfloat16", "bf16": "bfloat16", "fp16": "float16"}


def pool_name(gpu: str) -> str:
    """A pool name for a GPU type: `A100-80G` -> `a100-80g` (letters, digits, - and _)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", gpu.lower()).strip("-")
    if not name:
        raise UserError(f"GPU {gpu!r} gives no usable pool name (letters, digits, - and _)")
    return name


def engine_settings(replica: ReplicaModel) -> dict[str, Any]:
    """vLLM settings of a pool running `replica` as the plan modelled it."""
    engine: dict[str, Any] = {"dtype": _DTYPES[replica.precision]}
    if replica.precision == "fp8":
        engine["quantization"] = "fp8"
    context = replica.context_length
    if 0 < replica.kv_capacity < context:
        context = replica.kv_capacity  # vLLM refuses a context its KV cache cannot hold
    engine.update(tensor_parallel_size=replica.tp, max_num_seqs=replica.max_num_seqs,
                  max_model_len=context, gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
                  enforce_eager=False)
    return engine


def serve_config_for_fleet(counts: Mapping[str, int], replicas: Mapping[str, ReplicaModel],
                           model_profile: str,
                           model_uri: str = DEFAULT_MODEL_URI,
                           prices: Mapping[str, float] | None = None,
                           routing_policy: str = "tandem") -> dict[str, Any]:
    """The whole Serve config (as apps/serve.gpu.yaml) of a fleet: one pool per GPU type with
    replicas, in `counts`' order.

    Args:
        counts: GPU type -> replicas (types with 0 are left out).
        replicas: GPU type -> the replica model the plan sized that type with.
        model_profile: catalog profile the router's latency priors are computed for.
        model_uri: registry URI every pool serves.
        prices: GPU type -> replica price to write into the pool, for prices the shipped
            catalog does not hold (a `--catalog` override); the rest come from the catalog.
        routing_policy: the policy the plan was validated with, so the fleet runs it.
    """
    from tandem.registry import MODEL_URI

    if not MODEL_URI.match(model_uri):
        raise UserError(f"{model_uri!r} is not a registry URI (models:/NAME@ALIAS or "
                        "models:/NAME/VERSION)")
    pools: dict[str, dict[str, Any]] = {}
    for gpu, count in counts.items():
        if count < 0:
            raise UserError(f"{gpu}: {count} replicas; a fleet cannot have fewer than 0")
        if count == 0:
            continue
        replica = replicas.get(gpu)
        if replica is None:
            raise UserError(f"{gpu}: the fleet has replicas of it but no replica model")
        name = pool_name(gpu)
        if name in pools:
            raise UserError(f"GPU types {pools[name]['gpu']!r} and {gpu!r} both make pool {name!r}")
        pools[name] = {"gpu": gpu, "num_replicas": int(count),
                       "max_ongoing_requests": replica.max_num_seqs,
                       "engine": engine_settings(replica)}
        if prices and gpu in prices:
            pools[name]["price_per_hour"] = float(prices[gpu])
    if not pools:
        raise UserError("the fleet has no replicas: nothing to serve")
    args = {"model": model_uri, "routing_policy": routing_policy, "model_profile": model_profile,
            "telemetry": {"log_text": False}, "pools": pools}
    return {"proxy_location": "HeadOnly",
            "http_options": {"host": "127.0.0.1", "port": API_PORT},  # TANDEM_HOST for tandem deploy
            "applications": [{"name": "tandem", "route_prefix": "/",
                              "import_path": INGRESS_IMPORT_PATH, "args": args}]}


def _header(path: Path, config: dict[str, Any]) -> str:
    apps = config.get("applications") or [{}]
    pools = (apps[0].get("args") or {}).get("pools") or {}
    fleet = ", ".join(_describe_pool(pool) for pool in pools.values()) or "no pools"
    return (f"# Launch: tandem deploy --config {path}   (on a GPU cluster from cluster.yaml; "
            "add --local to try it on the local stack's CPU pools)\n"
            f"# Emitted by `tandem plan`: {fleet}. A pool without price_per_hour is priced\n"
            "# from platform/tandem/assets/catalog.yaml through its `gpu`.\n")


def _describe_pool(pool: dict[str, Any]) -> str:
    tp = (pool.get("engine") or {}).get("tensor_parallel_size", 1)
    return f"{pool.get('num_replicas', 1)} x {pool.get('gpu')}" + (f" (TP {tp})" if tp > 1 else "")


def write_serve_config(path: Path, config: dict[str, Any]) -> None:
    """Write `config` (from `serve_config_for_fleet`) as YAML under a header saying how to
    deploy it; a path that cannot be written is a `UserError` naming it."""
    path = Path(path)
    text = _header(path, config) + yaml.safe_dump(config, sort_keys=False)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot write Serve config {path}: {error.strerror or error}") from None

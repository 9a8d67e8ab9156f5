"""Try a GPU Serve config on the local stack: its pools placed on the local CPU pool nodes.

A planned fleet (`tandem plan --emit-serve-config`) names GPU types a laptop does not
have. `tandem deploy --local` keeps its pools, their names and their prices (the router
still prices by GPU rent) and runs each as one replica on a local pool node, with the
engine settings and latency prior `apps/serve.local.yaml` gives that node. Pools take the
nodes in turn, costliest replica first (so it gets the stack's first node, `fast` by
default); with more pools than nodes, pools share a node and its core.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from tandem.config import describe_validation_error
from tandem.errors import UserError
from tandem.serve.config import PoolConfig, ServeAppConfig, load_serve_config
from tandem.settings import Settings

LOCAL_SERVE_CONFIG = Path("apps") / "serve.local.yaml"


def local_node_pools(settings: Settings, path: Path | None = None) -> dict[str, PoolConfig]:
    """Each local pool node (`settings.local_pools`, in order) -> the cpu pool the local Serve
    config (`apps/serve.local.yaml` of the project) runs on it: what a pool placed there copies."""
    path = path or settings.project_dir / LOCAL_SERVE_CONFIG
    on_node = {pool.node or name: pool
               for name, pool in load_serve_config(path).pools.items() if pool.is_cpu}
    missing = [node for node in settings.local_pools if node not in on_node]
    if missing:
        raise UserError(f"{path} runs no cpu pool on local node(s) {', '.join(missing)}; a pool "
                        "placed there takes that pool's engine settings and latency prior")
    return {node: on_node[node] for node in settings.local_pools}


def place_on_local_nodes(config: ServeAppConfig, nodes: Mapping[str, PoolConfig]
                         ) -> tuple[ServeAppConfig, list[str]]:
    """`config` with each GPU pool turned into a one-replica cpu pool on a local node.

    Args:
        config: a validated Serve config (GPU pools priced already).
        nodes: local node name -> the cpu pool whose engine settings and prior a pool placed
            on that node gets (see `local_node_pools`).

    Returns:
        The new config, validated, and one line per pool (and per shared node) saying
        what became of it.
    """
    if not nodes:
        raise UserError("no local pool nodes to place the pools on (TANDEM_LOCAL_POOLS)")
    names = list(nodes)
    gpu_pools = sorted((name for name, pool in config.pools.items() if not pool.is_cpu),
                       key=lambda name: -config.pools[name].price_per_hour)
    pools = {name: pool.model_dump() for name, pool in config.pools.items()}
    placed: dict[str, list[str]] = {}
    notes = []
    for name, pool in config.pools.items():
        if pool.is_cpu:
            placed.setdefault(pool.node or name, []).append(name)
            notes.append(f"pool {name}: already a cpu pool, kept as it is")
    for turn, name in enumerate(gpu_pools):
        pool = config.pools[name]
        node = names[turn % len(names)]
        template = nodes[node]
        pools[name] = template.model_dump() | {
            "price_per_hour": pool.price_per_hour, "node": node, "num_replicas": 1,
            "autoscaling": None}
        placed.setdefault(node, []).append(name)
        notes.append(f"pool {name}: {_replicas(pool)} x {pool.gpu}{_tp(pool)} -> 1 cpu replica on "
                     f"local node {node}, still priced ${pool.price_per_hour:.3f}/h")
    notes += [f"local node {node} is shared by pools {', '.join(sharing)} "
              f"({len(config.pools)} pools, {len(names)} local nodes)"
              for node, sharing in placed.items() if len(sharing) > 1]
    data = config.model_dump() | {"pools": pools}
    try:
        return ServeAppConfig.model_validate(data), notes
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "the config placed on local nodes")) from None


def _replicas(pool: PoolConfig) -> str:
    if pool.autoscaling is not None:
        return f"{pool.autoscaling.min_replicas}-{pool.autoscaling.max_replicas}"
    return str(pool.num_replicas)


def _tp(pool: PoolConfig) -> str:
    size = pool.engine.tensor_parallel_size
    return f" (TP {size})" if size > 1 else ""

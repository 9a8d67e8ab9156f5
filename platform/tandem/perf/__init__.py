"""The one performance model: what a replica delivers, what a request waits, what it costs.

At the bottom of the package (it imports only the catalog): the router predicts with it,
the simulator replays with it, the planner sizes fleets with it, and the reports price
with it. Import order: perf <- routing <- planner.
"""

from tandem.perf.cost import (
    fleet_rent_per_hour,
    rent_usd,
    replica_seconds_at_capacity,
    request_cost_usd,
)
from tandem.perf.pool import JOINING, PoolConstants, idle_limits, join_pool, pool_constants
from tandem.perf.roofline import (
    MAX_NUM_SEQS,
    MAX_PREFILL_TOKENS,
    POOL_MAX_NUM_SEQS,
    ReplicaModel,
    batch_slots,
    build_replica_model,
    flat_prior,
    generation_throughput,
)

__all__ = ["JOINING", "MAX_NUM_SEQS", "MAX_PREFILL_TOKENS", "POOL_MAX_NUM_SEQS", "PoolConstants",
           "ReplicaModel", "batch_slots", "build_replica_model", "fleet_rent_per_hour",
           "flat_prior", "generation_throughput", "idle_limits", "join_pool", "pool_constants",
           "rent_usd", "replica_seconds_at_capacity", "request_cost_usd"]

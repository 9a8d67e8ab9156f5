"""One planning run: replica models per GPU type, the optimized mix, homogeneous baselines.

Kept apart from the CLI so tests and notebooks call `make_plan` with plain objects,
and apart from the optimizer so the policy of what to compare (every GPU type, each
validated the same way) is stated once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tandem.catalog import Catalog, ModelProfile
from tandem.errors import UserError
from tandem.perf import ReplicaModel, build_replica_model
from tandem.planner.optimizer import (
    ValidatedFleet,
    optimize_mix,
    require_feasible,
    size_homogeneous,
)
from tandem.planner.simulator import Slo
from tandem.planner.trace import Trace

HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class Plan:
    model: ModelProfile
    precision: str
    slo: Slo
    rate_scale: float
    trace: Trace
    replicas: dict[str, ReplicaModel]
    notes: list[str]
    best: ValidatedFleet
    mix_source: str  # "ilp" or "homogeneous <GPU>"
    homogeneous: dict[str, ValidatedFleet | None]

    @property
    def best_homogeneous(self) -> ValidatedFleet | None:
        fleets = [fleet for fleet in self.homogeneous.values() if fleet is not None]
        return min(fleets, key=lambda fleet: fleet.cost_per_hour) if fleets else None

    @property
    def savings(self) -> float | None:
        baseline = self.best_homogeneous
        if baseline is None:
            return None
        return 1.0 - self.best.cost_per_hour / baseline.cost_per_hour


def validate_slo(ttft_ms: float, tpot_ms: float, attainment: float) -> Slo:
    if ttft_ms is None or ttft_ms <= 0 or tpot_ms is None or tpot_ms <= 0:
        raise UserError("SLOs must be positive: --ttft-slo-ms and --tpot-slo-ms > 0")
    if not 0 < attainment <= 1:
        raise UserError(f"--attainment must be in (0, 1], got {attainment}")
    return Slo(ttft_ms=ttft_ms, tpot_ms=tpot_ms, attainment=attainment)


def build_replicas(catalog: Catalog, model: ModelProfile, precision: str,
                   gpus: Sequence[str] | None = None) -> tuple[dict[str, ReplicaModel], list[str]]:
    """A replica model per GPU type that can hold the model, and notes on what changed."""
    names = list(gpus) if gpus else list(catalog.gpus)
    replicas, notes = {}, []
    for name in names:
        spec = catalog.gpu(name)
        try:
            replica = build_replica_model(catalog, spec, model, precision)
        except UserError as error:
            notes.append(f"{name} skipped: {error}")
            continue
        replicas[name] = replica
        if replica.precision_note:
            notes.append(replica.precision_note)
        if replica.tp > 1:
            notes.append(f"{name}: {model.name} needs tensor parallel {replica.tp} "
                         f"(weights + a useful KV cache)")
    if not replicas:
        raise UserError(f"{model.name} fits none of {', '.join(names)}")
    return replicas, notes


def make_plan(trace: Trace, catalog: Catalog, model: ModelProfile, precision: str, slo: Slo,
              rate_scale: float = 1.0, gpus: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None) -> Plan:
    """Optimize and validate a mixed fleet and every homogeneous fleet for one trace."""
    if len(trace) == 0:
        raise UserError("the trace has no requests")
    scaled = trace.scaled(rate_scale)
    replicas, notes = build_replicas(catalog, model, precision, gpus)
    say = progress or (lambda message: None)
    mix = optimize_mix(scaled, replicas, slo, progress=say) if len(replicas) > 1 else None
    homogeneous = {name: size_homogeneous(scaled, replica, name, slo, progress=say)
                   for name, replica in replicas.items()}
    for name in catalog.gpus if not gpus else gpus:
        homogeneous.setdefault(name, None)
    best = require_feasible(mix, homogeneous, slo)
    source = "ilp" if best is mix else "homogeneous " + next(iter(best.counts))
    if best is not mix and mix is not None:
        notes.append(f"the ILP mix validated at ${mix.cost_per_hour:.2f}/h; a homogeneous "
                     "fleet was cheaper, so it is the plan")
    return Plan(model=model, precision=precision, slo=slo, rate_scale=rate_scale, trace=scaled,
                replicas=replicas, notes=notes, best=best, mix_source=source,
                homogeneous=homogeneous)


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan JSON contract (README, `tandem plan --json`) plus detail for reports."""
    sim = plan.best.simulation
    savings = plan.savings
    return {
        "model": plan.model.name,
        "precision": plan.precision,
        "slo": {"ttft_ms": plan.slo.ttft_ms, "tpot_ms": plan.slo.tpot_ms,
                "attainment": plan.slo.attainment},
        "rate_scale": plan.rate_scale,
        "mix": dict(plan.best.counts),
        "mix_source": plan.mix_source,
        "cost_per_hour": round(plan.best.cost_per_hour, 4),
        "monthly_cost": round(plan.best.cost_per_hour * HOURS_PER_MONTH, 2),
        "slo_attainment": round(sim.slo_attainment, 6),
        "homogeneous": {
            name: {"count": None, "cost_per_hour": None, "slo_attainment": None}
            if fleet is None else
            {"count": fleet.counts[name], "cost_per_hour": round(fleet.cost_per_hour, 4),
             "slo_attainment": round(fleet.simulation.slo_attainment, 6)}
            for name, fleet in plan.homogeneous.items()},
        "savings_vs_best_homogeneous": None if savings is None else round(savings, 6),
        "simulated_requests": len(plan.trace),
        "rejected_requests": sim.rejected,
        "ttft_ms": {k: round(v, 2) for k, v in sim.ttft_ms.items()},
        "tpot_ms": {k: round(v, 2) for k, v in sim.tpot_ms.items()},
        "cost_per_1k_requests": round(sim.cost_per_1k_requests, 6),
        "cost_per_1m_output_tokens": round(sim.cost_per_1m_output_tokens, 6),
        "pools": [{"gpu": pool.gpu, "replicas": pool.replicas, "tensor_parallel": pool.tp,
                   "cost_per_hour": round(pool.cost_per_hour, 4), "requests": pool.requests,
                   "utilization": round(pool.utilization, 4)} for pool in sim.pools],
        "replica": {name: {"tensor_parallel": r.tp, "precision": r.precision,
                           "price_per_hour": r.price_per_hour, "kv_cache_tokens": r.kv_capacity}
                    for name, r in plan.replicas.items()},
        "notes": plan.notes,
    }

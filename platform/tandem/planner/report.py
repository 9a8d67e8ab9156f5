"""A plan as data and as text: the JSON summary, the terminal table, the markdown report.

The table and the report read the same summary dict as `--json`, so the views never
disagree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tandem.perf import rent_usd
from tandem.planner.demand import WAIT_GROWTH_S, mean_wait_s
from tandem.planner.fleet import describe, gpus_of, owned_in_use
from tandem.planner.plan import HOURS_PER_MONTH, Plan
from tandem.planner.simulator import percentiles


def _ms(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _tiers(plan: Plan) -> dict[str, Any]:
    """Per tier: its targets (the wait bound where it has no TTFT target), simulated
    attainment and TTFT percentiles, and the GPU types that served it."""
    sim = plan.best.simulation
    served_by = sim.pool_of_request
    gpu_of_pool = [pool.gpu for pool in sim.pools]
    ttft = (sim.first_token_s - plan.demand.trace.arrival_s) * 1e3
    out = {}
    for tier in plan.demand.tiers:
        mine = (plan.demand.tier_of_request == tier.name) & (served_by >= 0)
        pools, counts = np.unique(served_by[mine], return_counts=True)
        shares = {gpu_of_pool[p]: round(float(c) / max(1, int(mine.sum())), 4)
                  for p, c in zip(pools, counts)}
        out[tier.name] = {
            "share": round(float((plan.demand.tier_of_request == tier.name).mean()), 6),
            "ttft_ms": _ms(tier.ttft_ms), "tpot_ms": _ms(tier.tpot_ms),
            "max_wait_s": None if math.isfinite(tier.ttft_ms) else plan.demand.max_wait_s,
            "ttft_percentiles_ms": {k: round(v, 2) for k, v in percentiles(ttft[mine]).items()},
            "slo_attainment": round(plan.best.judgement.by_tier.get(tier.name, math.nan), 6),
            "gpus": sorted(shares, key=shares.get, reverse=True),
            "requests_by_gpu": shares}
    return out


def _capacity(plan: Plan) -> dict[str, Any]:
    """Per type: the steady-state replica estimate, the fitted factor, their product, and
    the replicas the simulator validated for the type alone."""
    out = {}
    for gpu, steady in plan.search.steady_state.items():
        alone = plan.homogeneous.get(gpu)
        estimate = steady * plan.search.fit.factor(gpu) if math.isfinite(steady) else None
        out[gpu] = {"steady_state_replicas": round(steady, 3) if math.isfinite(steady) else None,
                    "factor": round(plan.search.fit.factor(gpu), 4),
                    "fitted": gpu in plan.search.fit.fitted,
                    "estimate": None if estimate is None else round(estimate, 3),
                    "validated": None if alone is None else alone.fleet[gpu]}
    return out


def _overloaded(plan: Plan) -> list[str]:
    """Fleets cheaper than the plan that met every target but failed because their queue
    grows: what the attainment alone would have picked."""
    return [f"{describe(v.fleet, plan.offers)} (${v.cost_per_hour:,.2f}/h) met the targets "
            f"but fails: {v.judgement.overload}"
            for v in sorted(plan.search.simulated, key=lambda v: v.cost_per_hour)
            if v.judgement.attained and v.judgement.overload
            and v.cost_per_hour < plan.best.cost_per_hour]


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan JSON contract (README, `tandem plan --json`) plus detail for reports."""
    best = plan.best
    sim = best.simulation
    savings = plan.savings
    duration = plan.demand.trace.duration_s
    single = plan.demand.tiers[0] if len(plan.demand.tiers) == 1 else None
    first_wait, last_wait = mean_wait_s(plan.demand.trace, sim)
    summary: dict[str, Any] = {
        "model": plan.model.name,
        "precision": plan.precision,
        "policy": plan.policy,
        "slo": {"ttft_ms": _ms(single.ttft_ms) if single else None,
                "tpot_ms": _ms(single.tpot_ms) if single else None,
                "attainment": plan.demand.attainment,
                "max_wait_s": plan.demand.max_wait_s},
        "rate_scale": plan.rate_scale,
        "mix": dict(best.fleet),
        "gpus": gpus_of(plan.offers, best.fleet),
        "mix_source": plan.search.source,
        "cost_per_hour": round(best.cost_per_hour, 4),
        "monthly_cost": round(best.cost_per_hour * HOURS_PER_MONTH, 2),
        "slo_attainment": round(best.judgement.overall, 6),
        "tiers": _tiers(plan),
        "homogeneous": {
            name: {"count": None, "cost_per_hour": None, "slo_attainment": None}
            if fleet is None else
            {"count": fleet.fleet[name], "cost_per_hour": round(fleet.cost_per_hour, 4),
             "slo_attainment": round(fleet.judgement.overall, 6)}
            for name, fleet in plan.homogeneous.items()},
        "savings_vs_best_homogeneous": None if savings is None else round(savings, 6),
        "simulated_requests": len(plan.demand.trace),
        "rejected_requests": sim.rejected,
        "simulations": len(plan.search.simulated),
        "ttft_ms": {k: round(v, 2) for k, v in sim.ttft_ms.items()},
        "tpot_ms": {k: round(v, 2) for k, v in sim.tpot_ms.items()},
        "mean_wait_s": {"first_tenth": _rounded(first_wait), "last_tenth": _rounded(last_wait)},
        "cost_per_1k_requests": round(rent_usd(best.cost_per_hour, duration)
                                      / max(1, sim.served) * 1e3, 6),
        "pools": [{"gpu": pool.gpu, "replicas": pool.replicas, "tensor_parallel": pool.tp,
                   "requests": pool.requests, "utilization": round(pool.utilization, 4)}
                  for pool in sim.pools],
        "replica": {name: {"tensor_parallel": o.replica.tp, "precision": o.replica.precision,
                           "price_per_hour": o.replica.price_per_hour,
                           "kv_cache_tokens": o.replica.kv_capacity}
                    for name, o in plan.offers.items()},
        "capacity": _capacity(plan),
        "notes": [*plan.notes, *plan.search.skipped, *_overloaded(plan)],
    }
    owned = owned_in_use(plan.offers, best.fleet)
    if owned:
        summary["owned"] = owned
    return summary


def _rounded(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _fleet(mix: dict[str, int], gpus: dict[str, int] | None = None) -> str:
    return " + ".join(f"{count} x {gpu}" + (f" ({gpus[gpu]} GPUs)" if gpus and gpus[gpu] != count
                                             else "") for gpu, count in mix.items())


def _targets(tier: dict[str, Any]) -> str:
    parts = [f"TTFT <= {tier['ttft_ms']:g} ms" if tier["ttft_ms"] is not None else "",
             f"TPOT <= {tier['tpot_ms']:g} ms" if tier["tpot_ms"] is not None else "",
             f"TTFT <= {tier['max_wait_s']:g} s (wait bound)" if tier["max_wait_s"] else ""]
    return " and ".join(part for part in parts if part)


def _spread(values: dict[str, float]) -> str:
    return "/".join(f"{values[key]:.0f}" for key in ("p50", "p90", "p99"))


def fleet_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per fleet: the plan first, then each homogeneous fleet."""
    rows = [["plan (" + summary["mix_source"] + ")", _fleet(summary["mix"], summary["gpus"]),
             _money(summary["cost_per_hour"]), _money(summary["monthly_cost"]),
             f"{summary['slo_attainment']:.2%}"]]
    for gpu, fleet in summary["homogeneous"].items():
        if fleet["count"] is None:
            rows.append([f"only {gpu}", "no fleet meets the targets", "-", "-", "-"])
        else:
            rows.append([f"only {gpu}", f"{fleet['count']} x {gpu}", _money(fleet["cost_per_hour"]),
                         _money(fleet["cost_per_hour"] * HOURS_PER_MONTH),
                         f"{fleet['slo_attainment']:.2%}"])
    return rows


TIER_HEADER = ["tier", "share", "targets", "attainment", "TTFT p50/p90/p99 ms", "served by"]


def tier_rows(summary: dict[str, Any]) -> list[list[str]]:
    return [[name, f"{tier['share']:.0%}", _targets(tier), f"{tier['slo_attainment']:.2%}",
             _spread(tier["ttft_percentiles_ms"]),
             ", ".join(f"{gpu} {share:.0%}" for gpu, share in tier["requests_by_gpu"].items())]
            for name, tier in summary["tiers"].items()]


def _overload_rules(summary: dict[str, Any]) -> str:
    """The two rules that keep an overloaded fleet out of a plan, and the plan's wait."""
    bounded = [name for name, tier in summary["tiers"].items() if tier["max_wait_s"]]
    wait = summary["mean_wait_s"]
    return ((f"Tiers without a TTFT target ({', '.join(bounded)}) are held to TTFT <= "
             f"{summary['slo']['max_wait_s']:g} s (--max-wait-s). " if bounded else "")
            + f"Mean wait {_seconds(wait['first_tenth'])} in the first tenth of arrivals, "
            f"{_seconds(wait['last_tenth'])} in the last (a fleet fails when it grows by over "
            f"{WAIT_GROWTH_S:g} s)")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _headline(summary: dict[str, Any]) -> str:
    tiers = summary["tiers"]
    targets = ("; ".join(f"{name}: {_targets(t)}" for name, t in tiers.items()) if len(tiers) > 1
               else _targets(next(iter(tiers.values()))))
    return (f"{summary['model']} ({summary['precision']}), {summary['simulated_requests']} "
            f"requests at rate x{summary['rate_scale']:g}; {targets} for "
            f"{summary['slo']['attainment']:.1%} of requests; routed by {summary['policy']}")


def _owned_lines(summary: dict[str, Any]) -> list[str]:
    return [f"owned {gpu}: {use['used']} of {use['owned']} GPUs used, $0 in the cost "
            f"(would-be rent {_money(use['would_be_rent_per_hour'])}/h)"
            for gpu, use in summary.get("owned", {}).items()]


def _capacity_line(summary: dict[str, Any]) -> str:
    return "capacity factor (simulated / steady-state replicas): " + ", ".join(
        f"{gpu} {c['factor']:.2f}" + ("" if c["fitted"] else " (not fitted)")
        for gpu, c in summary["capacity"].items())


def render_table(summary: dict[str, Any]) -> str:
    savings = summary["savings_vs_best_homogeneous"]
    lines = [_headline(summary), "",
             _table(["fleet", "GPUs", "$/hour", "$/month", "attainment"], fleet_rows(summary))]
    lines += ["", _table(TIER_HEADER, tier_rows(summary))]
    lines += [
        "",
        f"plan: {_money(summary['cost_per_1k_requests'])} per 1k requests; "
        f"TTFT p50/p90/p99 {summary['ttft_ms']['p50']:.0f}/{summary['ttft_ms']['p90']:.0f}/"
        f"{summary['ttft_ms']['p99']:.0f} ms, TPOT p50/p90/p99 {summary['tpot_ms']['p50']:.1f}/"
        f"{summary['tpot_ms']['p90']:.1f}/{summary['tpot_ms']['p99']:.1f} ms",
        "savings vs best homogeneous fleet: "
        + ("n/a (no homogeneous fleet meets the targets)" if savings is None
           else f"{savings:.1%}"),
        _overload_rules(summary),
        *_owned_lines(summary),
        _capacity_line(summary) + f"; {summary['simulations']} simulations",
    ]
    if summary["rejected_requests"]:
        lines.append(f"{summary['rejected_requests']} requests longer than the plan's KV "
                     "caches were rejected and count as misses")
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


def render_markdown(summary: dict[str, Any], plot_name: str | None = None) -> str:
    savings = summary["savings_vs_best_homogeneous"]
    pools = [[p["gpu"], str(p["replicas"]), str(p["tensor_parallel"]), str(p["requests"]),
              f"{p['utilization']:.0%}"] for p in summary["pools"]]
    capacity = [[gpu, "-" if c["steady_state_replicas"] is None else f"{c['steady_state_replicas']:.1f}",
                 f"{c['factor']:.2f}" + ("" if c["fitted"] else " (median)"),
                 "-" if c["estimate"] is None else f"{c['estimate']:.1f}",
                 "-" if c["validated"] is None else str(c["validated"])]
                for gpu, c in summary["capacity"].items()]
    parts = [
        f"# Fleet plan: {summary['model']} ({summary['precision']})", "",
        _headline(summary) + ". Every fleet below was replayed in the simulator with that "
        "router; attainment is the simulated figure.", "",
        *_markdown_table(["fleet", "GPUs", "$/hour", "$/month (730 h)", "SLO attainment"],
                         fleet_rows(summary)), "",
        "Savings vs the cheapest homogeneous fleet: "
        + ("n/a" if savings is None else f"**{savings:.1%}**") + ".", "",
        "## Tiers", "",
        *_markdown_table(TIER_HEADER, tier_rows(summary)), "",
        _overload_rules(summary) + ".", "",
        "## The plan's pools", "",
        *_markdown_table(["GPU", "replicas", "TP", "requests", "utilization"], pools), "",
        "## Capacity estimates", "",
        "Replicas each type needs alone: at steady-state capacity, times the factor the "
        "simulator fitted, against the simulator-validated count.", "",
        *_markdown_table(["GPU", "steady state", "factor", "estimate", "validated"], capacity),
        "",
        f"Cost: {_money(summary['cost_per_1k_requests'])} per 1k requests. "
        f"TTFT p50/p90/p99: {summary['ttft_ms']['p50']:.0f} / {summary['ttft_ms']['p90']:.0f} / "
        f"{summary['ttft_ms']['p99']:.0f} ms; TPOT p50/p90/p99: {summary['tpot_ms']['p50']:.1f} / "
        f"{summary['tpot_ms']['p90']:.1f} / {summary['tpot_ms']['p99']:.1f} ms.",
    ]
    owned = _owned_lines(summary)
    if owned:
        parts += ["", "## Owned GPUs", "", *[f"- {line}" for line in owned]]
    if summary["notes"]:
        parts += ["", "## Notes", "", *[f"- {note}" for note in summary["notes"]]]
    if plot_name:
        parts += ["", f"![fleets the search simulated, and cost per request by size]({plot_name})"]
    return "\n".join(parts) + "\n"

"""Human-readable renderings of a plan: the terminal table and the markdown report.

Both read the same summary dict as `--json`, so the three views never disagree.
"""

from __future__ import annotations

from typing import Any

from tandem.planner.plan import HOURS_PER_MONTH


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _fleet(mix: dict[str, int]) -> str:
    return " + ".join(f"{count} x {gpu}" for gpu, count in mix.items())


def fleet_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per fleet: the plan first, then each homogeneous fleet."""
    rows = [["plan (" + summary["mix_source"] + ")", _fleet(summary["mix"]),
             _money(summary["cost_per_hour"]), _money(summary["monthly_cost"]),
             f"{summary['slo_attainment']:.2%}"]]
    for gpu, fleet in summary["homogeneous"].items():
        if fleet["count"] is None:
            rows.append([f"only {gpu}", "no fleet meets the SLO", "-", "-", "-"])
        else:
            rows.append([f"only {gpu}", f"{fleet['count']} x {gpu}", _money(fleet["cost_per_hour"]),
                         _money(fleet["cost_per_hour"] * HOURS_PER_MONTH),
                         f"{fleet['slo_attainment']:.2%}"])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def render_table(summary: dict[str, Any]) -> str:
    slo = summary["slo"]
    savings = summary["savings_vs_best_homogeneous"]
    lines = [
        f"{summary['model']} ({summary['precision']}), {summary['simulated_requests']} requests "
        f"at rate x{summary['rate_scale']:g}; SLO TTFT <= {slo['ttft_ms']:g} ms, "
        f"TPOT <= {slo['tpot_ms']:g} ms for {slo['attainment']:.1%}",
        "",
        _table(["fleet", "GPUs", "$/hour", "$/month", "attainment"], fleet_rows(summary)),
        "",
        f"plan: {_money(summary['cost_per_1k_requests'])} per 1k requests, "
        f"{_money(summary['cost_per_1m_output_tokens'])} per 1M output tokens; "
        f"TTFT p50/p90/p99 {summary['ttft_ms']['p50']:.0f}/{summary['ttft_ms']['p90']:.0f}/"
        f"{summary['ttft_ms']['p99']:.0f} ms, TPOT p50/p90/p99 {summary['tpot_ms']['p50']:.1f}/"
        f"{summary['tpot_ms']['p90']:.1f}/{summary['tpot_ms']['p99']:.1f} ms",
        "savings vs best homogeneous fleet: "
        + ("n/a (no homogeneous fleet meets the SLO)" if savings is None else f"{savings:.1%}"),
    ]
    if summary["rejected_requests"]:
        lines.append(f"{summary['rejected_requests']} requests longer than the model's context "
                     "(or any replica's KV cache) were rejected and are not in the attainment")
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def render_markdown(summary: dict[str, Any], plot_name: str | None = None) -> str:
    slo = summary["slo"]
    savings = summary["savings_vs_best_homogeneous"]
    header = ["fleet", "GPUs", "$/hour", "$/month (730 h)", "SLO attainment"]
    rows = fleet_rows(summary)
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    pools = ["| GPU | replicas | TP | $/hour | requests | utilization |",
             "|---|---|---|---|---|---|"]
    pools += [f"| {p['gpu']} | {p['replicas']} | {p['tensor_parallel']} | "
              f"{_money(p['cost_per_hour'])} | {p['requests']} | {p['utilization']:.0%} |"
              for p in summary["pools"]]
    parts = [
        f"# Fleet plan: {summary['model']} ({summary['precision']})", "",
        f"Trace: {summary['simulated_requests']} requests at rate x{summary['rate_scale']:g}. "
        f"SLO: TTFT <= {slo['ttft_ms']:g} ms and TPOT <= {slo['tpot_ms']:g} ms for "
        f"{slo['attainment']:.1%} of requests. Every fleet below was replayed in the "
        "simulator; attainment is the simulated figure.", "",
        *table, "",
        "Savings vs the cheapest homogeneous fleet: "
        + ("n/a" if savings is None else f"**{savings:.1%}**") + ".", "",
        "## The plan's pools", "", *pools, "",
        f"Cost: {_money(summary['cost_per_1k_requests'])} per 1k requests, "
        f"{_money(summary['cost_per_1m_output_tokens'])} per 1M output tokens. "
        f"TTFT p50/p90/p99: {summary['ttft_ms']['p50']:.0f} / {summary['ttft_ms']['p90']:.0f} / "
        f"{summary['ttft_ms']['p99']:.0f} ms; TPOT p50/p90/p99: {summary['tpot_ms']['p50']:.1f} / "
        f"{summary['tpot_ms']['p90']:.1f} / {summary['tpot_ms']['p99']:.1f} ms.",
    ]
    if summary["rejected_requests"]:
        parts += ["", f"{summary['rejected_requests']} requests exceeded the model's context "
                  "and were rejected (not counted in attainment)."]
    if summary["notes"]:
        parts += ["", "## Notes", "", *[f"- {note}" for note in summary["notes"]]]
    if plot_name:
        parts += ["", f"![cost vs SLO and cost per request by size]({plot_name})"]
    return "\n".join(parts) + "\n"

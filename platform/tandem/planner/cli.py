"""`tandem plan`: the cheapest GPU fleet for a trace and latency SLOs.

Prints a table (or, with --json, only the plan object), and writes the JSON, a
markdown report and a PNG plot under --out (default `$TANDEM_HOME/plans/`).
`--fit-efficiency CSV` instead fits the perf model to measurements and writes a
catalog override file to pass back with --catalog.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tandem.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, default=None,
                        help="Azure-format CSV (TIMESTAMP,ContextTokens,GeneratedTokens); "
                             "default: the bundled Azure conversation trace")
    parser.add_argument("--model",
                        help="catalog model name (e.g. llama-3.1-8b) or a HF config.json")
    parser.add_argument("--precision", default="fp16", help="fp8, fp16 or bf16 (default fp16)")
    parser.add_argument("--ttft-slo-ms", type=float, help="time-to-first-token target, ms")
    parser.add_argument("--tpot-slo-ms", type=float, help="time-per-output-token target, ms")
    parser.add_argument("--attainment", type=float, default=0.99,
                        help="share of requests that must meet both targets (default 0.99)")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="multiply the trace's arrival rate by this (default 1)")
    parser.add_argument("--gpus", help="comma-separated GPU types to consider (default: all)")
    parser.add_argument("--catalog", type=Path, help="YAML/JSON file overriding catalog fields")
    parser.add_argument("--out", type=Path, help="report directory (default $TANDEM_HOME/plans)")
    parser.add_argument("--json", action="store_true", help="print only the plan JSON")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument("--fit-efficiency", type=Path, metavar="CSV",
                        help="fit efficiency factors from measured TTFT/TPOT and write a "
                             "catalog override (to --out, default ./efficiency.yaml)")


def _default_out() -> Path:
    from tandem.settings import load_settings

    return Path(load_settings().home).absolute() / "plans"


def _progress(message: str) -> None:
    print(f"[plan] {message}", file=sys.stderr, flush=True)


def _run_fit(args: argparse.Namespace) -> int:
    import yaml

    from tandem.catalog import load_catalog
    from tandem.planner.fit import fit_efficiency

    overrides = fit_efficiency(args.fit_efficiency, load_catalog(args.catalog))
    target = args.out or Path("efficiency.yaml")
    if target.is_dir():
        target = target / "efficiency.yaml"
    target.write_text("# Fitted by `tandem plan --fit-efficiency`; pass with --catalog.\n"
                      + yaml.safe_dump(overrides, sort_keys=True))
    print(yaml.safe_dump(overrides, sort_keys=True), end="")
    print(f"wrote {target}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.fit_efficiency:
        return _run_fit(args)
    if not args.model:
        raise UserError("--model is required (e.g. --model llama-3.1-8b)")
    if args.ttft_slo_ms is None or args.tpot_slo_ms is None:
        raise UserError("--ttft-slo-ms and --tpot-slo-ms are required")

    from tandem.catalog import PRECISIONS, load_catalog
    from tandem.planner.plan import make_plan, plan_summary, validate_slo
    from tandem.planner.report import render_markdown, render_table
    from tandem.planner.trace import bundled_trace_path, load_trace

    slo = validate_slo(args.ttft_slo_ms, args.tpot_slo_ms, args.attainment)
    if args.precision not in PRECISIONS:
        raise UserError(f"unknown precision {args.precision!r}; choose from "
                        f"{', '.join(PRECISIONS)}")
    if args.rate_scale <= 0:
        raise UserError(f"--rate-scale must be positive, got {args.rate_scale}")
    catalog = load_catalog(args.catalog)
    model = catalog.model(args.model)
    gpus = [name.strip() for name in args.gpus.split(",") if name.strip()] if args.gpus else None
    for name in gpus or []:
        catalog.gpu(name)
    trace = load_trace(args.trace or bundled_trace_path())
    _progress(f"{len(trace)} requests from {trace.source}; planning {model.name} "
              f"({args.precision}) at rate x{args.rate_scale:g}")
    plan = make_plan(trace, catalog, model, args.precision, slo, args.rate_scale, gpus,
                     progress=_progress)
    summary = plan_summary(plan)

    out = args.out or _default_out()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"plan-{model.name}-{plan.precision}".replace("/", "_")
    plot_name = None
    if not args.no_plot:
        from tandem.planner.plot import write_plot

        plot_name = write_plot(plan, out / f"{stem}.png").name
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / f"{stem}.md").write_text(render_markdown(summary, plot_name))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_table(summary))
        print(f"\nreport: {out / (stem + '.md')}")
    return 0

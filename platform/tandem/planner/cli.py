"""`tandem plan`: the cheapest GPU fleet for a trace and latency SLOs.

Prints a table (or, with --json, only the plan object), and writes the JSON, a
markdown report and a PNG plot under --out (default `$TANDEM_HOME/plans/`).
`--fit-efficiency CSV` instead fits the perf model to measurements and writes a
catalog override file to pass back with --catalog.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from tandem.errors import UserError

POLICIES = ("tandem", "least-loaded")  # tandem.planner.search.make_policy's (numpy-free here)
MAX_WAIT_HELP = 30  # tandem.planner.demand.MAX_WAIT_S, for --help (a test keeps them equal)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, default=None,
                        help="Azure-format CSV (TIMESTAMP,ContextTokens,GeneratedTokens, "
                             "optional tier); default: the bundled Azure conversation trace")
    parser.add_argument("--model",
                        help="catalog model name (e.g. llama-3.1-8b) or a HF config.json")
    parser.add_argument("--precision", default="fp16", help="fp8, fp16 or bf16 (default fp16)")
    parser.add_argument("--ttft-slo-ms", type=float,
                        help="time-to-first-token target, ms (omit for a TPOT-only target)")
    parser.add_argument("--tpot-slo-ms", type=float,
                        help="time-per-output-token target, ms (omit for a TTFT-only target)")
    parser.add_argument("--tier", action="append", default=[], metavar="NAME:share=S,ttft_ms=T,tpot_ms=P",
                        help="a tier with its own targets and traffic share (repeatable; shares "
                             "sum to 1; a trace's tier column overrides the shares); replaces "
                             "--ttft-slo-ms/--tpot-slo-ms")
    parser.add_argument("--student", metavar="MODEL:TIER=EXACT_MATCH,...",
                        help="also plan the routed mix: a distilled student (catalog model) "
                             "with its exact match per tier takes the tiers whose "
                             "min_quality it reaches (--tier ...,min_quality=Q); prints both "
                             "fleets and the saving against a teacher-only fleet")
    parser.add_argument("--max-wait-s", type=float, default=None,
                        help="TTFT bound, seconds, for a tier without a TTFT target "
                             f"(default {MAX_WAIT_HELP})")
    parser.add_argument("--attainment", type=float, default=0.99,
                        help="share of each tier's requests that must meet its targets "
                             "(default 0.99)")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="multiply the trace's arrival rate by this (default 1)")
    parser.add_argument("--gpus", help="comma-separated GPU types to consider (default: all)")
    parser.add_argument("--available", metavar="GPU=N,...",
                        help="GPUs of a type you can rent, e.g. H100=8,L4=32 (default: no cap)")
    parser.add_argument("--owned", metavar="GPU=N,...",
                        help="GPUs you already pay for, e.g. A100-80G=4: used first, $0 in the "
                             "cost (on top of --available)")
    parser.add_argument("--policy", choices=POLICIES, default="tandem",
                        help="the router every fleet is validated with (default tandem)")
    parser.add_argument("--catalog", type=Path,
                        help="YAML/JSON file overriding or adding catalog GPUs and models")
    parser.add_argument("--out", type=Path, help="report directory (default $TANDEM_HOME/plans)")
    parser.add_argument("--emit-serve-config", type=Path, metavar="FILE",
                        help="also write the plan as a Serve config for `tandem deploy --config`")
    parser.add_argument("--json", action="store_true", help="print only the plan JSON")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument("--fit-efficiency", type=Path, metavar="CSV",
                        help="fit efficiency factors from measured TTFT/TPOT and write a "
                             "catalog override (to --out, default ./efficiency.yaml)")


def parse_counts(flag: str, text: str | None) -> dict[str, int]:
    """`H100=8,L4=32` -> {"H100": 8, "L4": 32}; a count must be a non-negative integer."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise UserError(f"{flag} {text!r}: expected GPU=N,... (e.g. H100=8)")
        if not value.strip().isdigit():
            raise UserError(f"{flag}: the count of {name.strip()} must be a non-negative "
                            f"integer, got {value.strip()!r}")
        counts[name.strip()] = int(value)
    return counts


def _check_writable(path: Path) -> None:
    """Fail before planning, not after, when the emitted config could not be written."""
    import os

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK) or (
            path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"--emit-serve-config {path}: cannot write there")


def _prices_not_shipped(replicas: dict) -> dict[str, float]:
    """Replica prices a `--catalog` file changed or added: the emitted config must carry
    them, since serving prices from the shipped catalog."""
    from tandem.catalog import load_catalog

    shipped = load_catalog()
    return {gpu: replica.price_per_hour for gpu, replica in replicas.items()
            if gpu not in shipped.gpus
            or abs(shipped.gpus[gpu].price_per_hour * replica.tp - replica.price_per_hour) > 1e-9}


def _tiers(args: argparse.Namespace) -> list:
    from tandem.planner.demand import DEFAULT_TIER, make_tier, parse_tier

    if args.tier:
        return [parse_tier(text) for text in args.tier]
    if args.ttft_slo_ms is None and args.tpot_slo_ms is None:
        raise UserError("give --tpot-slo-ms and/or --ttft-slo-ms, or --tier")
    for flag, value in (("--ttft-slo-ms", args.ttft_slo_ms), ("--tpot-slo-ms", args.tpot_slo_ms)):
        if value is not None and not value > 0:
            raise UserError(f"SLOs must be positive: {flag} {value:g}")
    return [make_tier(DEFAULT_TIER, 1.0, args.ttft_slo_ms, args.tpot_slo_ms)]


def _default_out() -> Path:
    from tandem.settings import load_settings

    return Path(load_settings().home).absolute() / "plans"


def _make_out_dir(out: Path) -> Path:
    """Create the report directory before planning, not after, so a bad --out fails fast."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{out} is a file; --out names the report directory") from None
    except OSError as error:
        raise UserError(f"cannot create the report directory {out}: {error.strerror}") from None
    return out


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


def _run_routed(args: argparse.Namespace, trace, catalog, model, tiers, gpus, owned,
                available, max_wait_s: float, out: Path) -> int:
    from tandem.planner.routed import (
        make_routed_plan,
        parse_quality,
        render_routed,
        routed_summary,
    )

    student_name, quality = parse_quality(args.student)
    student = catalog.model(student_name)
    started = time.process_time()
    routed = make_routed_plan(trace, catalog, model, student, args.precision, tiers, quality,
                              args.attainment, args.rate_scale, progress=_progress, gpus=gpus,
                              owned=owned, available=available, policy=args.policy,
                              max_wait_s=max_wait_s)
    _progress(f"planned in {time.process_time() - started:.1f} s of CPU time")
    summary = routed_summary(routed)
    path = out / f"plan-{model.name}-{student.name}-routed.json".replace("/", "_")
    path.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_routed(summary))
        print(f"\nplan: {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.fit_efficiency:
        return _run_fit(args)
    if not args.model:
        raise UserError("--model is required (e.g. --model llama-3.1-8b)")

    from tandem.catalog import PRECISIONS, load_catalog
    from tandem.planner.demand import MAX_WAIT_S, check_max_wait, check_shares
    from tandem.planner.plan import make_plan
    from tandem.planner.report import plan_summary, render_markdown, render_table
    from tandem.planner.trace import bundled_trace_path, load_trace

    tiers = _tiers(args)
    if args.student and args.emit_serve_config:
        raise UserError("--emit-serve-config plans one model; drop it with --student")
    if not 0 < args.attainment <= 1:
        raise UserError(f"--attainment must be in (0, 1], got {args.attainment}")
    if args.precision not in PRECISIONS:
        raise UserError(f"unknown precision {args.precision!r}; choose from "
                        f"{', '.join(PRECISIONS)}")
    if not (args.rate_scale > 0 and math.isfinite(args.rate_scale)):
        raise UserError(f"--rate-scale must be a positive number, got {args.rate_scale:g}")
    max_wait_s = MAX_WAIT_S if args.max_wait_s is None else args.max_wait_s
    check_max_wait(max_wait_s)
    available = parse_counts("--available", args.available)
    owned = parse_counts("--owned", args.owned)
    if args.emit_serve_config:
        _check_writable(args.emit_serve_config)
    catalog = load_catalog(args.catalog)
    model = catalog.model(args.model)
    gpus = [name.strip() for name in args.gpus.split(",") if name.strip()] if args.gpus else None
    for name in [*(gpus or []), *available, *owned]:
        catalog.gpu(name)
    trace = load_trace(args.trace or bundled_trace_path())
    if trace.tiers is None:
        check_shares(tiers)
    out = _make_out_dir(args.out or _default_out())
    _progress(f"{len(trace)} requests from {trace.source}; planning {model.name} "
              f"({args.precision}) at rate x{args.rate_scale:g}, routed by {args.policy}")
    if args.student:
        return _run_routed(args, trace, catalog, model, tiers, gpus, owned, available,
                           max_wait_s, out)
    started = time.process_time()
    plan = make_plan(trace, catalog, model, args.precision, tiers, args.attainment,
                     args.rate_scale, gpus, owned=owned, available=available,
                     policy=args.policy, progress=_progress, max_wait_s=max_wait_s)
    _progress(f"planned in {time.process_time() - started:.1f} s of CPU time")
    summary = plan_summary(plan)

    stem = f"plan-{model.name}-{plan.precision}".replace("/", "_")
    plot_name = None
    if not args.no_plot:
        from tandem.planner.plot import write_plot

        plot_name = write_plot(plan, out / f"{stem}.png").name
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / f"{stem}.md").write_text(render_markdown(summary, plot_name))
    if args.emit_serve_config:
        from tandem.planner.emit import serve_config_for_fleet, write_serve_config

        replicas = {gpu: plan.offers[gpu].replica for gpu in plan.best.fleet}
        write_serve_config(args.emit_serve_config, serve_config_for_fleet(
            plan.best.fleet, replicas, model.name,
            prices=_prices_not_shipped(replicas) if args.catalog else None,
            routing_policy=plan.policy))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_table(summary))
        print(f"\nreport: {out / (stem + '.md')}")
        if args.emit_serve_config:
            print(f"serve config: {args.emit_serve_config} "
                  f"(tandem deploy --config {args.emit_serve_config})")
    return 0

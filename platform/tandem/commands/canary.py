"""`tandem canary NAME VERSION [--share S] [--pools P,Q]`: serve VERSION beside the champion
and send it a share of NAME's requests; `tandem canary NAME --stop` ends it. The request
log records which version answered each request, so the two can be compared (the rollout
in `tandem watch` does this itself); `tandem promote NAME VERSION` then reuses the canary's
engines."""

from __future__ import annotations

import argparse

from tandem.errors import UserError
from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="Registered model name, e.g. tandem-tiny.")
    parser.add_argument("version", type=int, nargs="?", help="Version to canary.")
    parser.add_argument("--share", type=float, default=0.2,
                        help="Share of the model's requests for the canary (default 0.2).")
    parser.add_argument("--pools", default=None,
                        help="Comma-separated pools to run it on (default: every pool).")
    parser.add_argument("--stop", action="store_true", help="End the canary; keep the champion.")


def run(args: argparse.Namespace) -> int:
    from tandem.serve.deploy import start_canary, stop_canary

    settings = load_settings()
    if args.stop:
        stop_canary(args.name, settings)
        return 0
    if args.version is None:
        raise UserError("give the VERSION to canary, or --stop")
    if not 0 < args.share < 1:
        raise UserError(f"--share must be between 0 and 1 (exclusive), got {args.share:g}")
    pools = [pool.strip() for pool in args.pools.split(",") if pool.strip()] if args.pools else None
    start_canary(args.name, args.version, args.share, settings, pools)
    return 0

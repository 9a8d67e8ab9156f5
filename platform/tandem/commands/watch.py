"""`tandem watch`: judge the champion's telemetry every interval, submit a retraining job
when a trigger fires, and roll a retrained version out (`tandem.watch`, which
`jobs/retrain_watch.py` runs as a long-lived Ray job).

    tandem watch [--config WATCH.yaml] [--model NAME] [--interval S] [--once] [-- --key=value ...]
"""

from __future__ import annotations

import argparse
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="Watch YAML (fields of WatchConfig); defaults otherwise.")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="Registered model to watch (default tandem-tiny).")
    parser.add_argument("--interval", type=float, default=None, metavar="S",
                        help="Seconds between evaluations (default 60).")
    parser.add_argument("--once", action="store_true", help="Evaluate once, print, exit.")
    parser.add_argument("overrides", nargs="*", help="--key=value overrides (after --)")


def run(args: argparse.Namespace) -> int:
    from tandem.settings import load_settings
    from tandem.watch.config import load_watch_config
    from tandem.watch.run import run_watch

    config = load_watch_config(args.config, args.overrides, model=args.model,
                               interval_s=args.interval)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_watch(config, load_settings(), once=args.once)

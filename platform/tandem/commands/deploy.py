"""`tandem deploy`: serve the registered champion on every pool of a Serve config."""

from __future__ import annotations

import argparse
from pathlib import Path

from tandem.settings import load_settings

DEFAULT_CONFIG = Path("apps/serve.local.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Serve YAML.")
    parser.add_argument("--model", help="Registry URI overriding the config's (models:/NAME@ALIAS).")
    parser.add_argument("--down", action="store_true", help="Delete the deployed apps instead.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for health.")


def run(args: argparse.Namespace) -> int:
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy, shutdown

    settings = load_settings()
    if args.down:
        shutdown(settings)
        return 0
    overrides = {"model": args.model} if args.model else None
    deploy(load_serve_config(args.config, overrides), settings, timeout_s=args.timeout)
    return 0

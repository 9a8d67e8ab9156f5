"""`tandem deploy`: serve the registered champion on every pool of a Serve config."""

from __future__ import annotations

import argparse
from pathlib import Path

from tandem.settings import load_settings

DEFAULT_CONFIG = Path("apps/serve.local.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Serve YAML.")
    parser.add_argument("--model", help="Registry URI overriding the config's (models:/NAME@ALIAS).")
    parser.add_argument("--local", action="store_true",
                        help="Run the config's GPU pools on the local stack's CPU pool nodes "
                        "(one replica each, same names and prices), e.g. to try a plan.")
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
    config = load_serve_config(args.config, overrides)
    if args.local:
        from tandem.serve.local import local_node_pools, place_on_local_nodes

        config, notes = place_on_local_nodes(config, local_node_pools(settings))
        for note in notes:
            print(note)
    deploy(config, settings, timeout_s=args.timeout)
    return 0

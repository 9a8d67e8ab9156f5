"""`tandem rollback NAME`: serve the `previous` champion again, blue/green, then move the
aliases back (as `tandem promote` does: only once it serves)."""

from __future__ import annotations

import argparse
import sys

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="Registered model name, e.g. tandem-tiny.")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds before giving up.")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.registry import PREVIOUS, alias_version
    from tandem.serve.deploy import SwapFailed, serve_champion

    settings = load_settings()
    previous = alias_version(args.name, PREVIOUS, settings.mlflow_url)
    if previous is None:
        raise UserError(f"{args.name} has no `previous` version to roll back to")
    try:
        serve_champion(args.name, previous, settings, timeout_s=args.timeout)
    except SwapFailed as error:
        print(f"tandem rollback: {error}", file=sys.stderr)
        return 1
    print(f"{args.name}: rolled back to v{previous}")
    return 0

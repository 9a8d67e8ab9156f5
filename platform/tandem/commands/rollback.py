"""`tandem rollback NAME`: serve the `previous` champion again, blue/green."""

from __future__ import annotations

import argparse

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="Registered model name, e.g. tandem-tiny.")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds before giving up.")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.registry import PREVIOUS, alias_version, promote
    from tandem.serve.deploy import check_swap, swap

    settings = load_settings()
    previous = alias_version(args.name, PREVIOUS, settings.mlflow_url)
    if previous is None:
        raise UserError(f"{args.name} has no `previous` version to roll back to")
    check_swap(args.name, previous, settings)
    promote(args.name, previous, settings.mlflow_url)
    swap(args.name, previous, settings, timeout_s=args.timeout)
    print(f"{args.name}: rolled back to v{previous}")
    return 0

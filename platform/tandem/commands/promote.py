"""`tandem promote NAME VERSION`: move `champion` to VERSION (the old one becomes
`previous`) and switch the running app to it blue/green."""

from __future__ import annotations

import argparse

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="Registered model name, e.g. tandem-tiny.")
    parser.add_argument("version", type=int, help="Model version to serve.")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds before giving up.")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.registry import promote
    from tandem.serve.deploy import check_swap, swap

    settings = load_settings()
    check_swap(args.name, args.version, settings)
    try:
        old = promote(args.name, args.version, settings.mlflow_url)
    except Exception as error:
        raise UserError(f"cannot promote {args.name} v{args.version}: "
                        f"{type(error).__name__}: {str(error)[:200]}") from None
    swap(args.name, args.version, settings, timeout_s=args.timeout)
    print(f"{args.name}: champion v{args.version} now serving"
          + (f" (previous: v{old})" if old and old != args.version else ""))
    return 0

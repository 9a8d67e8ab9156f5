"""`tandem promote NAME VERSION`: switch the running app to VERSION blue/green, then move
`champion` to it (the old one becomes `previous`). A swap that fails moves no alias and
leaves traffic where it was: exit 2 when the version cannot serve or nothing serves NAME,
exit 1 for a timeout or another internal failure."""

from __future__ import annotations

import argparse
import sys

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="Registered model name, e.g. tandem-tiny.")
    parser.add_argument("version", type=int, help="Model version to serve.")
    parser.add_argument("--timeout", type=float, default=None, help="Seconds before giving up.")


def run(args: argparse.Namespace) -> int:
    from tandem.serve.deploy import SwapFailed, serve_champion

    try:
        old = serve_champion(args.name, args.version, load_settings(), timeout_s=args.timeout)
    except SwapFailed as error:
        print(f"tandem promote: {error}", file=sys.stderr)
        return 1
    print(f"{args.name}: champion v{args.version} now serving"
          + (f" (previous: v{old})" if old and old != args.version else ""))
    return 0

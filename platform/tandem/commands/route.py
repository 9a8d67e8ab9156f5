"""`tandem route explain`: why recent requests went to the pools they did.

The ingress writes its decision log to `$TANDEM_HOME/routing/decisions.jsonl`; this
verb prints the last N with every candidate pool's predicted TTFT, TPOT and cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DECISIONS_FILE = Path("routing") / "decisions.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    explain = sub.add_parser("explain", help="Show recent routing decisions and why.",
                             description="Show recent routing decisions and why.")
    explain.add_argument("--last", type=int, default=10, metavar="N",
                         help="How many of the most recent decisions (default 10).")
    explain.add_argument("--file", type=Path, default=None, metavar="PATH",
                         help="Decision log to read (default $TANDEM_HOME/routing/decisions.jsonl).")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.routing.log import format_explain, parse_jsonl
    from tandem.settings import load_settings

    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    path = args.file or load_settings().home / DECISIONS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"no routing decisions at {path} yet (the serving ingress writes them; "
                        "send a request first, or pass --file)") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    records = parse_jsonl(text, str(path))[-args.last:]
    if not records:
        print(f"no routing decisions in {path} yet")
        return 0
    print(format_explain(records))
    return 0

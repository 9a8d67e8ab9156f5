"""`tandem route explain`: why recent requests went to the pools they did, and how right
the router's predictions were.

The ingress writes its decision log to `$TANDEM_HOME/routing/decisions.jsonl`; this
verb prints the last N with every candidate pool's predicted TTFT, TPOT and cost, then
each pool's calibration from the request log's last `--hours`: the TTFT predicted at
decision time against the TTFT measured, and how many requests that rests on. It reads
only those hours' partitions and the three columns the calibration needs, so it costs
what the window holds, not the log's history (at 1 M rows of 48 hours, reading every
column took 21 s and 2.9 GB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DECISIONS_FILE = Path("routing") / "decisions.jsonl"
SKIP_FIRST = 20  # a pool's first requests are what the router learns from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    explain = sub.add_parser("explain", help="Show recent routing decisions and why.",
                             description="Show recent routing decisions and why.")
    explain.add_argument("--last", type=int, default=10, metavar="N",
                         help="How many of the most recent decisions (default 10).")
    explain.add_argument("--file", type=Path, default=None, metavar="PATH",
                         help="Decision log to read (default $TANDEM_HOME/routing/decisions.jsonl).")
    explain.add_argument("--telemetry", default=None, metavar="ROOT",
                         help="Request log root for the calibration (default $TANDEM_HOME/telemetry; "
                              "the Serve config's telemetry.root if it sets one).")
    explain.add_argument("--hours", type=float, default=1.0, metavar="H",
                         help="Calibrate over the request log's last H hours (default 1).")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.routing.log import format_explain, parse_jsonl
    from tandem.routing.outcome import CALIBRATION_COLUMNS, format_calibration, ttft_calibration
    from tandem.settings import load_settings
    from tandem.telemetry.request_log import read_requests
    from tandem.telemetry.schema import as_utc

    if args.last < 1:
        raise UserError(f"--last must be at least 1, got {args.last}")
    if not 0 < args.hours < 1e6:  # also refuses nan
        raise UserError(f"--hours must be a positive number of hours, got {args.hours}")
    home = load_settings().home
    path = args.file or home / DECISIONS_FILE
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
    telemetry = args.telemetry or str(home / "telemetry")
    try:
        rows = read_requests(telemetry, since=as_utc(time.time() - args.hours * 3600),
                             columns=CALIBRATION_COLUMNS).to_pylist()
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the request log under {telemetry}: {error}") from None
    print()
    print(f"last {args.hours:g} h of the request log: {len(rows)} requests")
    print(format_calibration(ttft_calibration(rows, SKIP_FIRST), SKIP_FIRST))
    return 0

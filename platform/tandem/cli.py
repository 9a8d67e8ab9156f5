"""`tandem` command line: one verb per user task.

Each verb is a small module exposing `add_arguments(parser)` and
`run(args) -> int`; this file only wires them. User errors exit 2 with a
one-line message, internal failures exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tandem.errors import UserError

# verb -> (module implementing it, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "up": ("tandem.commands.up", "Start the local stack: Ray cluster and MLflow server"),
    "down": ("tandem.commands.down", "Stop everything `tandem up` started"),
    "status": ("tandem.commands.status", "Show each local service, its URL and health"),
    "observe": ("tandem.commands.observe", "Start Prometheus with Tandem's rules beside the stack"),
    "train": ("tandem.commands.train", "Submit a fine-tuning job to Ray and stream its logs"),
    "register": ("tandem.commands.register", "Register a saved checkpoint in MLflow"),
    "models": ("tandem.commands.models", "List registered model versions and aliases"),
    "deploy": ("tandem.commands.deploy", "Serve the champion model on every pool of a Serve config"),
    "promote": ("tandem.commands.promote", "Make VERSION the champion and switch traffic to it"),
    "rollback": ("tandem.commands.rollback", "Switch traffic back to the previous champion"),
    "canary": ("tandem.commands.canary", "Send a share of a model's traffic to another version"),
    "demo": ("tandem.commands.demo", "Run the whole loop on the local stack"),
    "plan": ("tandem.planner.cli", "Plan the cheapest GPU fleet for a trace and latency SLOs"),
    "route": ("tandem.commands.route", "Explain recent routing decisions"),
    "watch": ("tandem.commands.watch", "Evaluate retrain triggers and submit retraining jobs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UserError as error:
        print(f"tandem {args.verb}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

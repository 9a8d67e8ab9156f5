"""`tandem up`: start the local Ray cluster and MLflow server (idempotent)."""

from __future__ import annotations

import argparse

from tandem import stack
from tandem.commands.status import print_status
from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    stack.up(settings)
    print_status(settings)
    return 0

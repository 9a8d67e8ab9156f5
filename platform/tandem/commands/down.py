"""`tandem down`: stop exactly what `tandem up` started (idempotent)."""

from __future__ import annotations

import argparse

from tandem import stack
from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    stack.down(load_settings())
    return 0

"""`tandem observe`: Prometheus with Tandem's recording and alert rules beside the stack."""

from __future__ import annotations

import argparse

from tandem.observe import observe
from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    url = observe(load_settings())
    print(f"Prometheus: {url} (rules: deploy/prometheus/rules; alerts: {url}/alerts); "
          "`tandem down` stops it with the stack")
    return 0

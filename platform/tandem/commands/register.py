"""`tandem register --checkpoint PATH`: register a checkpoint a run left behind
(e.g. when MLflow was down at the end of training)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="Checkpoint directory.")
    parser.add_argument("--model", default="tandem-tiny", help="Registered model name.")


def run(args: argparse.Namespace) -> int:
    from tandem.train.run import RegistrationFailed, register_saved_checkpoint

    try:
        register_saved_checkpoint(args.checkpoint.resolve(), args.model, load_settings())
    except RegistrationFailed as error:
        print(error)
        return 1
    return 0

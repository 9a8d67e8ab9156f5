"""`tandem models`: registered versions, their aliases and lineage (an adapter's base)."""

from __future__ import annotations

import argparse

from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="Only this registered model.")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError
    from tandem.registry import list_versions

    settings = load_settings()
    try:
        rows = list_versions(settings.mlflow_url, args.name)
    except Exception as error:
        raise UserError(f"cannot list models from MLflow at {settings.mlflow_url}: "
                        f"{type(error).__name__} (is the stack up? `tandem status`)") from None
    if not rows:
        print("no registered models yet; train one with `tandem train --config jobs/configs/tiny.yaml`")
        return 0
    print(f"{'model':<16} {'ver':>4} {'aliases':<28} {'exact':>6} {'created':<17} "
          f"{'adapter of':<22} trigger")
    for row in rows:
        exact = row.lineage.eval_exact_match
        print(f"{row.name:<16} {row.version:>4} {','.join(row.aliases) or '-':<28} "
              f"{'-' if exact is None else f'{exact:.3f}':>6} {row.created:<17} "
              f"{row.lineage.adapter_base.removeprefix('models:/') or '-':<22} "
              f"{row.lineage.trigger or '-'}")
    print(f"\nMLflow UI: {settings.mlflow_url}/#/models")
    return 0

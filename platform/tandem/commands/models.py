"""`tandem models`: registered versions, their aliases and lineage (an adapter's base).
`tandem models import NAME`: convert a packaged base model once and register it."""

from __future__ import annotations

import argparse

from tandem.settings import load_settings

IMPORT = "import"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="NAME | import NAME",
                        help="Only this registered model; or `import smollm2` to convert the "
                        "packaged SmolLM2-135M-Instruct and register it as a base model.")


def run(args: argparse.Namespace) -> int:
    from tandem.errors import UserError

    if args.words[:1] == [IMPORT]:
        if len(args.words) != 2:
            raise UserError("usage: tandem models import NAME (e.g. smollm2)")
        return import_model(args.words[1])
    if len(args.words) > 1:
        raise UserError(f"expected at most one model name, got {' '.join(args.words)}")
    return list_models(args.words[0] if args.words else None)


def import_model(name: str) -> int:
    """Convert (cached) and register packaged model `name`; a second run changes nothing."""
    from tandem.models.packaged import import_packaged_model

    import_packaged_model(name, load_settings())
    return 0


def list_models(name: str | None) -> int:
    from tandem.errors import UserError
    from tandem.registry import list_versions

    settings = load_settings()
    try:
        rows = list_versions(settings.mlflow_url, name)
    except Exception as error:
        raise UserError(f"cannot list models from MLflow at {settings.mlflow_url}: "
                        f"{type(error).__name__} (is the stack up? `tandem status`)") from None
    if not rows:
        print("no registered models yet; train one with `tandem train --config jobs/configs/tiny.yaml`")
        return 0
    width = max(16, *(len(row.name) for row in rows))
    print(f"{'model':<{width}} {'ver':>4} {'aliases':<28} {'exact':>6} {'created':<17} "
          f"{'adapter of':<22} trigger")
    for row in rows:
        exact = row.lineage.eval_exact_match
        print(f"{row.name:<{width}} {row.version:>4} {','.join(row.aliases) or '-':<28} "
              f"{'-' if exact is None else f'{exact:.3f}':>6} {row.created:<17} "
              f"{row.lineage.adapter_base.removeprefix('models:/') or '-':<22} "
              f"{row.lineage.trigger or row.lineage.source or '-'}")
    print(f"\nMLflow UI: {settings.mlflow_url}/#/models")
    return 0

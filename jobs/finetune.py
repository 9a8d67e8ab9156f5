"""Fine-tune a model with Ray Train and register it in MLflow.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/finetune.py --config jobs/configs/tiny.yaml [--key=value ...]

Exit status: 0 registered (or trained with register=false), 2 bad config or
data, 1 anything else (including MLflow unreachable at the end: the message
says how to register the kept checkpoint).
"""

from __future__ import annotations

import argparse
import sys

from tandem.config import load_config
from tandem.errors import UserError
from tandem.settings import load_settings
from tandem.train.config import FinetuneConfig
from tandem.train.run import RegistrationFailed, run_finetune


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config (see jobs/configs/).")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_config(FinetuneConfig, args.config, overrides)
        result = run_finetune(config, load_settings())
    except UserError as error:
        print(f"finetune: {error}", file=sys.stderr)
        return 2
    except RegistrationFailed as error:
        print(f"finetune: {error}", file=sys.stderr)
        return 1
    print(f"done: run {result.run_name}, checkpoint {result.checkpoint_dir}, "
          f"version {result.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

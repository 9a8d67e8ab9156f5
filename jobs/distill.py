"""Distill a served model into a smaller student from its production answers (Ray Train).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/distill.py --config jobs/configs/distill-tiny.yaml [--key=value ...]

Exit status: 0 the student is registered, 2 bad config, no text in the request log, no
answers in the window or a student tokenizer that differs from the teacher's, 1 anything
else (MLflow unreachable at the end included: the message says how to register the kept
checkpoint).
"""

from __future__ import annotations

import argparse
import sys

from tandem.config import load_config
from tandem.errors import UserError
from tandem.settings import load_settings
from tandem.train.distill import DistillConfig, run_distill
from tandem.train.run import RegistrationFailed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config (see jobs/configs/).")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_config(DistillConfig, args.config, overrides)
        result = run_distill(config, load_settings())
    except UserError as error:
        print(f"distill: {error}", file=sys.stderr)
        return 2
    except RegistrationFailed as error:
        print(f"distill: {error}", file=sys.stderr)
        return 1
    print(f"done: student {config.student_model} version {result.version}, "
          f"exact match {result.metrics.get('eval_exact_match', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

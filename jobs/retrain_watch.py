"""Watch a served model's telemetry and submit a retraining job when a trigger fires.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"TANDEM_HOME": "'"$PWD"'/.tandem"}}' -- \
        python jobs/retrain_watch.py [--config WATCH.yaml] [--model NAME] [--interval S] [--key=value ...]

The same loop as `tandem watch` (`tandem.watch.run.run_watch`), as a long-lived Ray job.
TANDEM_HOME must name the stack's state dir, since the job runs in a copy of the working
dir; the loop's state lives there, so a resubmitted job resumes where the last one
stopped. Exit status: 2 bad config, 1 anything else; the loop itself runs until the job
is stopped (or one tick with --once).
"""

from __future__ import annotations

import argparse
import logging
import sys

from tandem.errors import UserError
from tandem.settings import load_settings
from tandem.watch.config import load_watch_config
from tandem.watch.run import run_watch


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--config", default=None, help="Watch YAML (fields of WatchConfig).")
    parser.add_argument("--model", default=None, help="Registered model to watch.")
    parser.add_argument("--interval", type=float, default=None, help="Seconds between evaluations.")
    parser.add_argument("--once", action="store_true", help="Evaluate once, print, exit.")
    args, overrides = parser.parse_known_args(argv)
    try:
        config = load_watch_config(args.config, [o for o in overrides if o != "--"],
                                   model=args.model, interval_s=args.interval)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        return run_watch(config, load_settings(), once=args.once)
    except UserError as error:
        print(f"retrain_watch: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

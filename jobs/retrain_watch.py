"""Watch a served model's telemetry and submit a retraining job when a trigger fires.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"TANDEM_HOME": "'"$PWD"'/.tandem"}}' -- \
        python jobs/retrain_watch.py [--config WATCH.yaml] [--model NAME] [--interval S]

The same loop as `tandem watch` (see `tandem.commands.watch`); TANDEM_HOME must name the
stack's state dir, since the job runs in a copy of the working dir. Exit status: 2 bad
config, 1 anything else; the loop itself runs until the job is stopped.
"""

from __future__ import annotations

import sys

from tandem.cli import main

if __name__ == "__main__":
    sys.exit(main(["watch", *sys.argv[1:]]))

"""`tandem train --config FILE`: submit `jobs/finetune.py` as a Ray job and stream its logs.

The submission is exactly what `ray job submit --working-dir . -- python
jobs/finetune.py --config FILE` does, plus the stack's environment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tandem.errors import UserError
from tandem.ray_jobs import submit_job, tail_job
from tandem.settings import load_settings
from tandem.train.config import FinetuneConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="Fine-tuning YAML, e.g. jobs/configs/tiny.yaml")
    parser.add_argument("--no-wait", action="store_true", help="Submit and return the job id.")
    parser.add_argument("overrides", nargs="*", help="--key=value overrides (after --)")


def run(args: argparse.Namespace) -> int:
    from tandem.config import load_config

    load_config(FinetuneConfig, args.config, args.overrides)  # fail here, not in the cluster
    if not Path("jobs/finetune.py").exists():
        raise UserError("run `tandem train` from the project root (jobs/finetune.py not found)")
    settings = load_settings()
    entrypoint = ["python", "jobs/finetune.py", "--config", args.config, *args.overrides]
    job_id = submit_job(settings, entrypoint)
    print(f"submitted job {job_id}; dashboard: {settings.dashboard_url}/#/jobs/{job_id}")
    if args.no_wait:
        return 0
    status = tail_job(settings, job_id)
    print(f"job {job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1

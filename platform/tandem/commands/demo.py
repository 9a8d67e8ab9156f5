"""`tandem demo`: the main job on the local stack, start to finish.

Today: start the stack, fine-tune the tiny model as a Ray job, register it in
MLflow, and print where to look. The stack stays up; `tandem down` stops it.
"""

from __future__ import annotations

import argparse
import time

from tandem import stack
from tandem.commands.status import print_status
from tandem.jobs import submit_job, tail_job
from tandem.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="jobs/configs/tiny.yaml", help="Fine-tuning config.")


def run(args: argparse.Namespace) -> int:
    from tandem.registry import list_versions

    settings = load_settings()
    started = time.monotonic()
    print("== 1/3 local stack")
    stack.up(settings)
    print("== 2/3 fine-tune on Ray Train (submitted as a Ray job)")
    job_id = submit_job(settings, ["python", "jobs/finetune.py", "--config", args.config])
    status = tail_job(settings, job_id)
    if status != "SUCCEEDED":
        print(f"fine-tuning job {job_id} ended {status}; logs: {settings.dashboard_url}/#/jobs")
        return 1
    print("== 3/3 summary")
    for row in list_versions(settings.mlflow_url)[:5]:
        print(f"  {row.name} v{row.version} aliases={','.join(row.aliases) or '-'} "
              f"eval_exact_match={row.lineage.eval_exact_match} "
              f"dataset={row.lineage.dataset_fingerprint[:12]}")
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    print(f"  MLflow UI:      {settings.mlflow_url}/#/models")
    print(f"  Ray dashboard:  {settings.dashboard_url}")
    print_status(settings)
    print("\nThe stack stays up for exploring; stop it with `make down`.")
    return 0

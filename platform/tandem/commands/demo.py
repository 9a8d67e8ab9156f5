"""`tandem demo`: the main job on the local stack, start to finish.

Start the stack, fine-tune the tiny model as a Ray job, register it in MLflow,
serve the champion on the local pools, and ask it through the OpenAI client.
The stack stays up for exploring; `tandem down` stops it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tandem import stack
from tandem.commands.status import print_status
from tandem.errors import UserError
from tandem.jobs import submit_job, tail_job
from tandem.settings import Settings, load_settings

SERVE_CONFIG = Path("apps/serve.local.yaml")
QUESTIONS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="jobs/configs/tiny.yaml", help="Fine-tuning config.")


def _ask_served_model(settings: Settings, model: str) -> None:
    """A few holdout questions through the official `openai` client, with Tandem's headers."""
    from openai import OpenAI

    from tandem.auth import client_key

    rows = [json.loads(line) for line in
            (settings.home / "datasets" / "task" / "holdout.jsonl").read_text().splitlines()]
    client = OpenAI(base_url=f"{settings.api_url}/v1", api_key=client_key(settings.home))
    correct = 0
    for row in rows[:QUESTIONS]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": row["prompt"].removesuffix(" =>")}],
            max_tokens=12, temperature=0)
        answer = raw.parse().choices[0].message.content.strip()
        correct += answer == row["completion"].strip()
        print(f"  {row['prompt']:<40} -> {answer:<24} (expected {row['completion'].strip()}; "
              f"pool {raw.headers['x-tandem-pool']}, v{raw.headers['x-tandem-model-version']}, "
              f"${float(raw.headers['x-tandem-cost-usd']):.2e})")
    print(f"  exact match {correct}/{QUESTIONS}")


def run(args: argparse.Namespace) -> int:
    from tandem.registry import list_versions
    from tandem.serve.config import load_serve_config
    from tandem.serve.deploy import deploy

    if not SERVE_CONFIG.exists():
        raise UserError(f"run `tandem demo` from the project root ({SERVE_CONFIG} not found)")
    settings = load_settings()
    started = time.monotonic()
    print("== 1/4 local stack: Ray cluster (head + one node per pool) and MLflow")
    stack.up(settings)
    print("== 2/4 fine-tune on Ray Train, submitted as a Ray job; registers in MLflow")
    job_id = submit_job(settings, ["python", "jobs/finetune.py", "--config", args.config])
    status = tail_job(settings, job_id)
    if status != "SUCCEEDED":
        print(f"fine-tuning job {job_id} ended {status}; logs: {settings.dashboard_url}/#/jobs")
        return 1
    print("== 3/4 serve the champion on the local pools (Ray Serve + vLLM)")
    serve_config = load_serve_config(SERVE_CONFIG)
    deploy(serve_config, settings)
    model = serve_config.model.removeprefix("models:/").split("@")[0]
    print("== 4/4 ask it through the OpenAI client")
    _ask_served_model(settings, model)
    print("\nregistered versions:")
    for row in list_versions(settings.mlflow_url, model)[:5]:
        print(f"  {row.name} v{row.version} aliases={','.join(row.aliases) or '-'} "
              f"eval_exact_match={row.lineage.eval_exact_match} "
              f"dataset={row.lineage.dataset_fingerprint[:12]}")
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    print(f"  OpenAI API:     {settings.api_url}/v1  (try README's curl line)")
    print(f"  MLflow UI:      {settings.mlflow_url}/#/models/{model}")
    print(f"  Ray dashboard:  {settings.dashboard_url}")
    print_status(settings)
    print("\nThe stack stays up for exploring; stop it with `make down`.")
    return 0

"""`tandem demo`: the whole loop on the local stack, start to finish (`tandem.story`).

Start the stack, fine-tune v1 as a Ray job, serve it, let traffic drift into data it
never saw, collect ratings and corrections, let a trigger retrain it, evaluate, canary
and promote v2, and show v2 doing better, ending with a summary table and the URLs.
The stack stays up for exploring; `tandem down` stops it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tandem import stack
from tandem.commands.status import print_status
from tandem.errors import UserError
from tandem.settings import Settings, load_settings

STORY_CONFIG = "jobs/demo.yaml"
DISTILL_STORY_CONFIG = "jobs/demo-distill.yaml"
QUESTIONS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="Story YAML (fields of tandem.story.StoryConfig, or with "
                             "--distill of tandem.distill_story.DistillStoryConfig).")
    parser.add_argument("--distill", action="store_true",
                        help="The flywheel's second half instead: distill the champion into "
                             "a student, route across both, measure rent per 1k requests.")
    parser.add_argument("overrides", nargs="*", help="--key=value overrides (after --)")


def _ask_with_the_openai_client(settings: Settings, model: str) -> None:
    """A few new-slice questions through the official `openai` client, chat format."""
    import logging

    from openai import OpenAI

    from tandem.auth import client_key
    from tandem.story import task_rows

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per question
    client = OpenAI(base_url=f"{settings.api_url}/v1", api_key=client_key(settings.home))
    for row in task_rows(settings, "new_holdout")[:QUESTIONS]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": row["prompt"].removesuffix(" =>")}],
            max_tokens=12, temperature=0)
        answer = raw.parse().choices[0].message.content.strip()
        print(f"  {row['prompt']:<36} -> {answer:<22} (expected {row['completion'].strip()}; "
              f"pool {raw.headers['x-tandem-pool']}, v{raw.headers['x-tandem-model-version']})")


def _run_distill(args: argparse.Namespace) -> int:
    from tandem.config import load_config
    from tandem.distill_story import DistillStoryConfig, run_distill_story, summary_lines

    config = load_config(DistillStoryConfig, args.config or DISTILL_STORY_CONFIG, args.overrides)
    if not Path(config.serve_config).exists():
        raise UserError(f"run `tandem demo --distill` from the project root "
                        f"({config.serve_config} not found)")
    settings = load_settings()
    started = time.monotonic()
    print("== local stack: Ray cluster (head + one node per pool) and MLflow")
    stack.up(settings)
    result = run_distill_story(config, settings)
    print("\n" + "\n".join(summary_lines(result, config)))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    print(f"  MLflow UI:      {settings.mlflow_url}/#/models/{config.student_model}")
    print("\nThe stack stays up for exploring; stop it with `make down`.")
    return 0


def run(args: argparse.Namespace) -> int:
    from tandem.config import load_config
    from tandem.story import StoryConfig, run_story, summary_lines

    if args.distill:
        return _run_distill(args)
    config = load_config(StoryConfig, args.config or STORY_CONFIG, args.overrides)
    if not Path(config.serve_config).exists():
        raise UserError(f"run `tandem demo` from the project root ({config.serve_config} not found)")
    settings = load_settings()
    started = time.monotonic()
    print("== local stack: Ray cluster (head + one node per pool) and MLflow")
    stack.up(settings)
    result = run_story(config, settings)
    print("\n== the new champion, asked through the OpenAI client")
    _ask_with_the_openai_client(settings, config.model)
    print("\n" + "\n".join(summary_lines(result, settings, config.model)))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    print(f"  OpenAI API:     {settings.api_url}/v1  (try README's curl line)")
    print(f"  MLflow UI:      {settings.mlflow_url}/#/models/{config.model}")
    print(f"  Ray dashboard:  {settings.dashboard_url}")
    print_status(settings)
    print("\nThe stack stays up for exploring; stop it with `make down`.")
    return 0

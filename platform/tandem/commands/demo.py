"""`tandem demo`: the whole loop on the local stack, start to finish (`tandem.demos.loop`).

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
REAL_STORY_CONFIG = "jobs/demo-real.yaml"
DISTILL_STORY_CONFIG = "jobs/demo-distill.yaml"
REAL_DISTILL_STORY_CONFIG = "jobs/demo-distill-real.yaml"
QUESTIONS = 4
SIDE_BY_SIDE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="Story YAML (fields of tandem.demos.loop.StoryConfig, or with "
                             "--distill of tandem.demos.distill.DistillStoryConfig).")
    parser.add_argument("--distill", action="store_true",
                        help="The flywheel's second half instead: distill the champion into "
                             "a student, route across both, measure rent per 1k requests.")
    parser.add_argument("--real", action="store_true",
                        help="The same loop on a real LLM (SmolLM2-135M-Instruct, imported "
                             "from its PyPI package), fine-tuned as a LoRA adapter; with "
                             "--distill, its merged fine-tune distilled into a 6-layer student.")
    parser.add_argument("overrides", nargs="*", help="--key=value overrides (after --)")


def _openai_client(settings: Settings):
    """The official `openai` client on the stack's API, with the stack's inference key."""
    import logging

    from openai import OpenAI

    from tandem.auth import client_key

    for name in ("httpx", "httpx2"):  # the client's HTTP library: no log line per question
        logging.getLogger(name).setLevel(logging.WARNING)
    return OpenAI(base_url=f"{settings.api_url}/v1", api_key=client_key(settings.home))


def _ask_with_the_openai_client(settings: Settings, model: str) -> None:
    """A few new-slice questions through the official `openai` client, chat format."""
    from tandem.data.prompts import chat_message
    from tandem.demos.loop import MAX_ANSWER_TOKENS, task_rows

    client = _openai_client(settings)
    for row in task_rows(settings, "new_holdout")[:QUESTIONS]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": chat_message(row["prompt"])}],
            max_tokens=MAX_ANSWER_TOKENS, temperature=0)
        answer = raw.parse().choices[0].message.content.strip()
        print(f"  {row['prompt']:<36} -> {answer:<22} (expected {row['completion'].strip()}; "
              f"pool {raw.headers['x-tandem-pool']}, v{raw.headers['x-tandem-model-version']})")


def _base_and_fine_tune_side_by_side(settings: Settings, base: str, tuned: str) -> None:
    """A few holdout questions to the base model and to its fine-tune, through the `openai`
    client: what fine-tuning changed."""
    from tandem.data.prompts import chat_message
    from tandem.demos.loop import task_rows

    client = _openai_client(settings)
    for row in task_rows(settings, "holdout")[:SIDE_BY_SIDE]:
        question = chat_message(row["prompt"])
        answers = [client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], max_tokens=24,
            temperature=0).choices[0].message.content.strip() for model in (base, tuned)]
        print(f"  {question!r} (expected {row['completion'].strip()!r})")
        print(f"    {base}: {answers[0][:100]!r}")
        print(f"    {tuned}: {answers[1][:100]!r}")


def _run_distill(args: argparse.Namespace) -> int:
    from tandem.config import load_config
    from tandem.demos.distill import DistillStoryConfig, run_distill_story, summary_lines

    config = load_config(DistillStoryConfig, args.config or (
        REAL_DISTILL_STORY_CONFIG if args.real else DISTILL_STORY_CONFIG), args.overrides)
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
    from tandem.demos.loop import StoryConfig, run_story, served_config, summary_lines

    if args.distill:
        return _run_distill(args)
    config = load_config(StoryConfig, args.config or (REAL_STORY_CONFIG if args.real
                                                      else STORY_CONFIG), args.overrides)
    if not Path(config.serve_config).exists():
        raise UserError(f"run `tandem demo` from the project root ({config.serve_config} not found)")
    settings = load_settings()
    started = time.monotonic()
    print("== local stack: Ray cluster (head + one node per pool) and MLflow")
    stack.up(settings)
    result = run_story(config, settings)
    print("\n== the new champion, asked through the OpenAI client")
    _ask_with_the_openai_client(settings, config.model)
    served = served_config(config)
    if served.adapters:
        from tandem.registry import parse_model_uri

        print("\n== the base model and its fine-tune, side by side")
        _base_and_fine_tune_side_by_side(settings, parse_model_uri(served.model)[0], config.model)
    print("\n" + "\n".join(summary_lines(result, settings, config.model)))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    print(f"  OpenAI API:     {settings.api_url}/v1  (try README's curl line)")
    print(f"  MLflow UI:      {settings.mlflow_url}/#/models/{config.model}")
    print(f"  Ray dashboard:  {settings.dashboard_url}")
    print_status(settings)
    print("\nThe stack stays up for exploring; stop it with `make down`.")
    return 0

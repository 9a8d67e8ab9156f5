"""The demo of the whole loop on the local stack, start to finish: what `make demo` shows
and the end-to-end test checks, with a shorter `StoryConfig`.

train v1 -> serve it -> traffic drifts into the task's `new` slice (space and weather
words v1 never saw) -> simulated users rate each answer and correct the wrong ones ->
the retraining loop's triggers fire and a retraining job trains v2 from v1 on the corrections
plus a sample of the original data, with lineage -> the rollout evaluates v2 against v1
offline, canaries it on live traffic, and promotes it -> v2 answers the new slice better.

Exact match on the new slice is measured through the HTTP API on `new_holdout`, a split
no correction comes from, before and after. Users are simulated by the task's own
answers (a user who knows the right translation), which is the one shortcut here: every
other step is the real component (Ray Jobs, Ray Train, MLflow, Ray Serve, vLLM).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from tandem.config import StrictConfig
from tandem.errors import UserError
from tandem.settings import Settings

Log = Callable[[str], None]
MAX_ANSWER_TOKENS = 16  # 4 made-up words: up to 12 tokens of a real model's tokenizer
RETRIES = 10  # of a request the API answered 429 or 503


class StoryConfig(StrictConfig):
    """How long each act of the story runs."""

    model: str = "tandem-tiny"
    import_model: str = Field("", description="A packaged base model to import first "
                              "(`tandem models import`), e.g. smollm2; empty: none.")
    finetune_config: str = "jobs/configs/tiny.yaml"
    finetune_overrides: list[str] = Field(default_factory=list)
    serve_config: str = "apps/serve.local.yaml"
    serve_overrides: dict[str, Any] = Field(default_factory=dict)
    chat: bool = Field(False, description="Users ask through /v1/chat/completions (the "
                       "model's chat template) instead of /v1/completions.")
    watch: dict[str, Any] = Field(default_factory=dict, description="WatchConfig fields.")
    drift_requests: int = Field(200, ge=1, description="Prompts from the `new` slice sent to v1.")
    canary_requests: int = Field(80, ge=1, description="Prompts sent while v2 is canaried.")
    eval_rows: int = Field(100, ge=1, description="`new_holdout` rows asked before and after.")
    clients: int = Field(4, ge=1, description="Concurrent simulated users.")
    canary_timeout_s: float = Field(300.0, gt=0)

    def watch_config(self):
        """The retraining loop's `WatchConfig` for this story's model (what `tandem watch` would run)."""
        from tandem.watch.config import WatchConfig

        return WatchConfig.model_validate({"model": self.model,
                                           "finetune_config": self.finetune_config, **self.watch})


@dataclass
class StoryResult:
    champion_before: int
    champion_after: int | None
    trigger: str
    verdicts: list[str] = field(default_factory=list)
    exact_match_before: float = 0.0
    exact_match_after: float | None = None
    traces: int = 0
    assessments: int = 0
    peak_rss_mb: float = 0.0  # of the story's process, which runs the triggers and the rollout


class Users:
    """Simulated users of the served model: they ask task prompts through the OpenAI API and
    rate each answer, with the right translation as the correction when it is wrong."""

    def __init__(self, settings: Settings, model: str, clients: int, chat: bool = False) -> None:
        import requests

        from tandem.auth import client_key

        self.url, self.model, self.clients, self.chat = settings.api_url, model, clients, chat
        self.session = requests.Session()
        self.session.headers["authorization"] = f"Bearer {client_key(settings.home)}"

    def post(self, path: str, body: dict, timeout_s: float, headers: dict | None = None):
        """POST as a well-behaved client: a 429 or 503 is retried after its Retry-After
        (the tiny model answers faster than the key's rate limit lets 4 users rate it)."""
        for _ in range(RETRIES):
            reply = self.session.post(f"{self.url}{path}", json=body, timeout=timeout_s,
                                      headers=headers)
            if reply.status_code not in (429, 503):
                return reply
            time.sleep(float(reply.headers.get("retry-after") or 1))
        return reply

    def answer(self, row: dict, tier: str | None = None) -> tuple[bool, Any]:
        """(answer right?, the HTTP reply) for one task row, asked in `tier` when given."""
        from tandem.data.prompts import chat_message

        body = {"model": self.model, "max_tokens": MAX_ANSWER_TOKENS, "temperature": 0}
        if self.chat:
            body["messages"] = [{"role": "user", "content": chat_message(row["prompt"])}]
        else:
            body["prompt"] = row["prompt"]
        endpoint = "chat/completions" if self.chat else "completions"
        reply = self.post(f"/v1/{endpoint}", body, timeout_s=120,
                          headers={"x-tandem-tier": tier} if tier else None)
        if reply.status_code != 200:
            raise UserError(f"the API answered {reply.status_code}: {reply.text[:300]}")
        choice = reply.json()["choices"][0]
        answer = choice["message"]["content"] if self.chat else choice["text"]
        return answer.strip() == row["completion"].strip(), reply

    def ask(self, row: dict, tier: str | None = None) -> tuple[bool, str, str]:
        """(answer right?, request id, answering version) for one task row."""
        right, reply = self.answer(row, tier)
        return right, reply.headers["x-request-id"], reply.headers["x-tandem-model-version"]

    def ask_and_rate(self, row: dict, tier: str | None = None) -> tuple[bool, str]:
        right, request_id, version = self.ask(row, tier)
        body = {"request_id": request_id, "score": 1 if right else -1,
                "feedback_id": f"story-{request_id}"}
        if not right:
            body["correction"] = row["completion"].strip()
        rated = self.post("/v1/feedback", body, timeout_s=30)
        if rated.status_code != 201:
            raise UserError(f"feedback answered {rated.status_code}: {rated.text[:300]}")
        return right, version

    def each(self, work: Callable[[dict], Any], rows: Sequence[dict]) -> list[Any]:
        with ThreadPoolExecutor(self.clients) as pool:
            return list(pool.map(work, rows))

    def exact_match(self, rows: Sequence[dict]) -> float:
        return sum(right for right, _, _ in self.each(self.ask, rows)) / len(rows)


def task_rows(settings: Settings, split: str) -> list[dict]:
    """The rows of one split of the built-in task (written under `$TANDEM_HOME` once)."""
    from tandem.data.task import write_task_dataset
    from tandem.triggers.retrain_data import read_jsonl

    return read_jsonl(write_task_dataset(settings.home / "datasets" / "task")[split])


def finish_job(settings: Settings, job_id: str, log: Log) -> None:
    """Stream the job's logs until it ends (`tandem.ray_jobs.tail_job`); it must succeed."""
    from tandem.ray_jobs import tail_job

    status = tail_job(settings, job_id)
    if status != "SUCCEEDED":
        raise UserError(f"job {job_id} ended {status} (its logs are above)")
    log(f"   job {job_id} SUCCEEDED (logs: {settings.dashboard_url}/#/jobs/{job_id})")


def import_in_a_subprocess(name: str, log: Log) -> None:
    """`tandem models import NAME`, as a user runs it: the conversion loads the whole model,
    and this process runs the retraining loop, whose memory the story reports."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tandem.cli", "models", "import", name],
                          capture_output=True, text=True)
    for line in done.stdout.splitlines():
        log(f"   {line}")
    if done.returncode != 0:
        raise UserError(f"tandem models import {name} failed: {done.stderr.strip()[-500:]}")


def served_config(config: StoryConfig):
    """The Serve config the story deploys: its model's champion, or, when the model is a
    LoRA adapter, the config's base with that adapter's champion among its adapters."""
    from tandem.config import load_config
    from tandem.serve.config import load_serve_config
    from tandem.train.config import FinetuneConfig

    champion = f"models:/{config.model}@champion"
    if not load_config(FinetuneConfig, config.finetune_config,
                       config.finetune_overrides).registers_adapter:
        return load_serve_config(config.serve_config, {"model": champion, **config.serve_overrides})
    serve = load_serve_config(config.serve_config, config.serve_overrides)
    if champion not in serve.adapters:
        raise UserError(f"{config.serve_config} does not serve the adapter {champion} "
                        f"(its adapters: {', '.join(serve.adapters) or 'none'})")
    return serve


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def with_clock(log: Log) -> Log:
    """`log` with the story's elapsed time in front of each line, so the demo shows where
    its minutes go."""
    started = time.monotonic()

    def timed(line: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - started), 60)
        log(f"[{minutes:2d}:{seconds:02d}] {line}")

    return timed


def run_story(config: StoryConfig, settings: Settings, log: Log = print) -> StoryResult:
    """Every act in order; raises `UserError` when one does not end the way the story needs."""
    from tandem.ray_jobs import submit_job
    from tandem.registry import CHAMPION, alias_version
    from tandem.serve.deploy import deploy
    from tandem.watch.build import build_rollout, build_tail, build_watcher

    log = with_clock(log)
    model, url = config.model, settings.mlflow_url
    watch = config.watch_config()
    if config.import_model:
        log(f"== 0/7 import the base model {config.import_model} (converted once, registered)")
        import_in_a_subprocess(config.import_model, log)
    log("== 1/7 fine-tune v1 on Ray Train (a Ray job); it registers in MLflow")
    if alias_version(model, CHAMPION, url) is None:
        finish_job(settings, submit_job(settings, [
            "python", "jobs/finetune.py", "--config", config.finetune_config,
            *config.finetune_overrides]), log)
    champion = alias_version(model, CHAMPION, url)
    log(f"   champion: {model} v{champion}")

    log("== 2/7 serve the champion on the local pools (Ray Serve + vLLM)")
    deploy(served_config(config), settings, log=log)
    users = Users(settings, model, config.clients, config.chat)
    judged = task_rows(settings, "new_holdout")[: config.eval_rows]
    before = users.exact_match(judged)
    log(f"   exact match on the new slice (new_holdout, via HTTP): {before:.1%}")

    log(f"== 3/7 traffic drifts into the new slice: {config.drift_requests} requests, "
        "users rate every answer and correct the wrong ones")
    drift = task_rows(settings, "new")
    rated = users.each(users.ask_and_rate, [drift[i % len(drift)]
                                            for i in range(config.drift_requests)])
    log(f"   {sum(not right for right, _ in rated)} of {len(rated)} answers corrected")
    time.sleep(3)  # the ingress flushes the request log every 2 s

    log("== 4/7 the triggers judge the telemetry; one fires and retrains")
    tail = build_tail(watch, settings, time.time())  # what the loop has read of the telemetry
    tail.advance(time.time())
    triggers = build_watcher(watch, settings, tail)
    fired = [r for r in triggers.tick(time.time()) if r.fired and r.action == "retrain"]
    if not fired:
        raise UserError("no retrain trigger fired; is the champion already trained on the "
                        "new slice? (start over with a fresh TANDEM_HOME)")
    trigger = f"{fired[0].name}: {fired[0].reason}"
    for result in fired:
        log(f"   FIRED {result.name}: {result.reason}")
    from tandem.triggers.evaluator import submission_id

    finish_job(settings, submission_id(model, fired[0].window_id), log)
    result = StoryResult(champion_before=champion, champion_after=None, trigger=trigger,
                         exact_match_before=before)

    log("== 5/7 the rollout evaluates v2 against v1 offline")
    rollout = build_rollout(watch, settings)
    verdict = rollout.tick(time.time())
    result.verdicts.append(f"{verdict.action}: {verdict.reason}" if verdict else "none")
    if verdict is None or verdict.action != "canary":
        log(f"   not canaried: {result.verdicts[-1]}")
        result.peak_rss_mb = peak_rss_mb()
        return result

    log(f"== 6/7 canary: {watch.rollout.canary_share:.0%} of live traffic on the challenger")
    mixed = task_rows(settings, "new")[::-1] + task_rows(settings, "holdout")
    deadline = time.monotonic() + config.canary_timeout_s
    sent = 0
    while True:
        batch = [mixed[(sent + i) % len(mixed)] for i in range(config.canary_requests)]
        versions = users.each(users.ask_and_rate, batch)
        sent += len(batch)
        time.sleep(3)
        verdict = rollout.tick(time.time())
        if verdict is None or verdict.action != "wait" or time.monotonic() > deadline:
            break
        log(f"   {verdict.reason}; sending more")
    log(f"   answered by version: { {v: sum(x == v for _, x in versions) for _, v in versions} }")
    result.verdicts.append(f"{verdict.action}: {verdict.reason}" if verdict else "none")
    log(f"   verdict: {result.verdicts[-1]}")

    log("== 7/7 the new champion on the new slice")
    result.champion_after = alias_version(model, CHAMPION, url)
    result.exact_match_after = users.exact_match(judged)
    log(f"   champion v{result.champion_after}: exact match on the new slice "
        f"{before:.1%} -> {result.exact_match_after:.1%}")
    time.sleep(3)  # the last answers reach the request log
    from tandem.telemetry.feedback import read_feedback
    from tandem.telemetry.request_log import read_requests
    from tandem.watch.build import build_trace_export

    telemetry = settings.home / "telemetry"
    result.traces, result.assessments = build_trace_export(watch, settings).export(
        read_requests(telemetry), read_feedback(telemetry))
    log(f"   {result.traces} requests exported to MLflow as traces (experiment tandem-serving) "
        f"with {result.assessments} user_score assessments")
    result.peak_rss_mb = peak_rss_mb()
    return result


def summary_lines(result: StoryResult, settings: Settings, model: str) -> list[str]:
    """The closing table: versions with stage and lineage, the trigger, exact match before
    and after, cost per 1k requests by pool."""
    from tandem.registry import list_versions, version_tags
    from tandem.rollout.controller import STAGE
    from tandem.telemetry.request_log import read_requests

    lines = [f"{'version':<8} {'aliases':<28} {'stage':<12} {'parent':<7} trigger"]
    for row in list_versions(settings.mlflow_url, model)[:4]:
        stage = version_tags(model, row.version, settings.mlflow_url).get(STAGE, "-")
        lines.append(f"v{row.version:<7} {','.join(row.aliases) or '-':<28} {stage:<12} "
                     f"{row.lineage.parent_version or '-':<7} {row.lineage.trigger[:60] or '-'}")
    after = ("-" if result.exact_match_after is None else f"{result.exact_match_after:.1%}")
    lines += ["", f"trigger: {result.trigger}", *(f"rollout: {v}" for v in result.verdicts),
              f"exact match on the new slice: v{result.champion_before} "
              f"{result.exact_match_before:.1%} -> v{result.champion_after} {after}",
              f"peak memory of the loop's process (triggers, rollout, gate client): "
              f"{result.peak_rss_mb:.0f} MB", "",
              "cost per 1k requests by pool (request log):"]
    requests = read_requests(settings.home / "telemetry").to_pylist()
    for pool in sorted({r["pool"] for r in requests if r["model"] == model and r["pool"]}):
        costs = [r["cost_usd"] for r in requests if r["model"] == model and r["pool"] == pool]
        lines.append(f"  {pool:<8} ${1000 * sum(costs) / len(costs):.6f} ({len(costs)} requests)")
    return lines

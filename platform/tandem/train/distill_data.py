"""The distillation set: what the teacher answered in production, users' corrections of
those answers, and a sample of the original training data.

Sequence-level distillation trains the student on the teacher's own outputs for the
prompts users actually send. A correction replaces the teacher's answer to its prompt (the
teacher was wrong there); the training sample keeps the task's ground truth in view. Rows
have the task's format (`{"prompt": ..., "completion": " ..."}`), one per prompt, the
latest answer winning. Without logged text (`telemetry.log_text: false`) there is nothing
to learn from, and that is an error naming the setting, not an empty training set.

A fixed share of the live prompts (by SHA-256, `held_out`) stays out of training: the
student and the teacher are scored on them per tier (`quality_rows`), against the task's
ground truth (a user's correction, else the task's own answer), not the teacher's output.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tandem.errors import UserError
from tandem.telemetry.window import between
from tandem.triggers.retrain_data import correction_rows, held_out, training_prompt


def teacher_rows(requests: pa.Table, teacher: str, start: float | None, end: float) -> list[dict]:
    """The teacher's answered requests in `(start, end]` with their text, as task rows."""
    window = between(requests, start, end)
    answered = window.filter(pc.and_(pc.equal(window["model"], teacher),
                                     pc.equal(window["status"], 200)))
    if answered.num_rows and pc.all(pc.is_null(answered["response"])).as_py():
        raise UserError(f"{teacher}'s {answered.num_rows} answered requests in the window were "
                        "logged without text (telemetry.log_text: false in the Serve config): "
                        "there is nothing to distill from")
    rows: dict[str, dict] = {}
    for row in answered.select(["prompt", "response"]).to_pylist():
        if row["prompt"] is None or not (row["response"] or "").strip():
            continue
        prompt = training_prompt(row["prompt"])
        rows.pop(prompt, None)
        rows[prompt] = {"prompt": prompt, "completion": " " + row["response"].strip()}
    return list(rows.values())


def build_distill_rows(requests: pa.Table, feedback: pa.Table, train_rows: Sequence[dict], *,
                       teacher: str, start: float | None, end: float, sample: int,
                       seed: int, holdout_share: float = 0.0) -> list[dict]:
    """Teacher answers (corrected where users corrected them) plus `sample` training rows
    whose prompts the traffic did not cover, shuffled with `seed`; the `holdout_share` of
    prompts kept for scoring (`quality_rows`) left out."""
    answers = {row["prompt"]: row for row in teacher_rows(requests, teacher, start, end)
               if not held_out(row["prompt"], holdout_share)}
    if not answers:
        raise UserError(f"no answered request of {teacher} in the window: nothing to distill")
    for row in correction_rows(feedback, requests, teacher):
        if row["prompt"] in answers:
            answers[row["prompt"]] = row
    rng = random.Random(seed)
    out = list(answers.values())
    out += [{"prompt": row["prompt"], "completion": row["completion"]}
            for row in rng.sample(list(train_rows), min(sample, len(train_rows)))
            if row["prompt"] not in answers and not held_out(row["prompt"], holdout_share)]
    rng.shuffle(out)
    return out


def quality_rows(requests: pa.Table, feedback: pa.Table, *, teacher: str, start: float | None,
                 end: float, holdout_share: float) -> dict[str, list[dict]]:
    """Tier -> the held-out live prompts of the teacher's answered requests in the window,
    each with its ground truth (the latest correction, else the task's answer); prompts
    with neither are skipped."""
    from tandem.data.task import reference_completion

    window = between(requests, start, end)
    answered = window.filter(pc.and_(pc.equal(window["model"], teacher),
                                     pc.equal(window["status"], 200)))
    corrections = {row["prompt"]: row["completion"]
                   for row in correction_rows(feedback, requests, teacher)}
    by_tier: dict[str, dict[str, dict]] = {}
    for row in answered.select(["prompt", "tier"]).to_pylist():
        if row["prompt"] is None:
            continue
        prompt = training_prompt(row["prompt"])
        if not held_out(prompt, holdout_share):
            continue
        truth = corrections.get(prompt) or reference_completion(prompt)
        if truth is not None:
            by_tier.setdefault(row["tier"], {})[prompt] = {"prompt": prompt, "completion": truth}
    return {tier: list(rows.values()) for tier, rows in by_tier.items()}

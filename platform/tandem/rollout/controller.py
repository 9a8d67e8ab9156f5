"""Walks a retrained challenger through evaluation, canary and promotion, and rolls back a
promoted version that regresses; one step per `tick`.

The state of a rollout lives on the model versions themselves, as registry tags
(`tandem.rollout.stage`, `.since`, `.reason`, plus the offline scores), so the MLflow UI
shows where each version stands and why, and a restarted watcher picks up where the
last one stopped. Stages of a challenger: (none) -> `canary` -> `promoted` -> `stable`,
or `rejected` at either gate, or `rolled_back` after promotion. The aliases move only once
a version serves (`RolloutOps.promote`), so they say what serves. A stage is written before
its action runs and the actions are idempotent, so an action that failed or was interrupted
is taken again by the next tick (a `promoted` challenger that is not champion yet is
promoted again). A rollback is the exception: its stages are written once it has run, so a
rollback that failed leaves the promoted version under watch, judged again next tick, and a
`promoted` challenger that became the `previous` champion (a rollback interrupted before
its stages, or `tandem rollback` by hand) is marked `rolled_back`, not promoted again.

The world is injected (`RolloutOps`), so the controller itself needs no Ray, MLflow or
clock; `tandem.watch.build` wires the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tandem.rollout.verdicts import (
    LiveStats,
    OfflineScores,
    RolloutConfig,
    Verdict,
    judge_canary,
    judge_offline,
    judge_promoted,
)

STAGE, SINCE, REASON = "tandem.rollout.stage", "tandem.rollout.since", "tandem.rollout.reason"
HOLDOUT_EM, FEEDBACK_EM = "tandem.rollout.holdout_exact_match", "tandem.rollout.feedback_exact_match"


@dataclass(frozen=True)
class RolloutOps:
    """What the controller reads and does, as plain callables."""

    aliases: Callable[[], dict[str, int | None]]  # champion, challenger, previous -> version
    tags: Callable[[int], dict[str, str]]
    set_tags: Callable[[int, dict[str, str]], None]
    score: Callable[[int, int], tuple[OfflineScores, OfflineScores]]  # both on the same rows
    live: Callable[[int, float, float], LiveStats]  # version, since, until
    start_canary: Callable[[int], None]
    stop_canary: Callable[[], None]
    promote: Callable[[int], None]  # serving moves to the version, then the champion alias
    rollback: Callable[[], None]  # serving moves back to `previous`, then the aliases


class Rollout:
    def __init__(self, config: RolloutConfig, ops: RolloutOps,
                 log: Callable[[str], None] = print) -> None:
        self.config, self.ops, self.log = config, ops, log

    def tick(self, now: float) -> Verdict | None:
        """Take the next step, if any; returns the verdict that led to it."""
        aliases = self.ops.aliases()
        champion, challenger = aliases.get("champion"), aliases.get("challenger")
        if champion is not None and challenger is not None and challenger != champion:
            tags = self.ops.tags(challenger)
            stage = tags.get(STAGE)
            if stage is None:
                return self._evaluate(champion, challenger, now)
            if stage == "canary":
                return self._judge_canary(champion, challenger, float(tags[SINCE]), now)
            if stage == "promoted" and challenger == aliases.get("previous"):
                return self._rolled_back(challenger, champion, Verdict(
                    "rollback", f"v{champion} serves again: v{challenger} was rolled back"), now)
            if stage == "promoted":  # tagged, then the promotion failed or was interrupted
                self.ops.promote(challenger)
                return Verdict("promote", tags.get(REASON, "resumed promotion"))
        if champion is not None:
            tags = self.ops.tags(champion)
            if tags.get(STAGE) == "promoted" and aliases.get("previous") is not None:
                return self._judge_promoted(champion, aliases["previous"], float(tags[SINCE]), now)
        return None

    def _enter(self, version: int, stage: str, verdict: Verdict, now: float,
               extra: dict[str, str] | None = None) -> None:
        self.ops.set_tags(version, {STAGE: stage, SINCE: f"{now:.3f}", REASON: verdict.reason,
                                    **(extra or {})})
        self.log(f"v{version}: {stage}: {verdict.reason}")

    def _evaluate(self, champion: int, challenger: int, now: float) -> Verdict:
        before, after = self.ops.score(champion, challenger)
        verdict = judge_offline(before, after, self.config)
        scores = {HOLDOUT_EM: f"{after.holdout:.4f}"}
        if after.feedback is not None:
            scores[FEEDBACK_EM] = f"{after.feedback:.4f}"
        if verdict.action == "canary":
            self._enter(challenger, "canary", verdict, now, scores)
            self.ops.start_canary(challenger)
        else:
            self._enter(challenger, "rejected", verdict, now, scores)
        return verdict

    def _judge_canary(self, champion: int, challenger: int, since: float, now: float) -> Verdict:
        verdict = judge_canary(self.ops.live(champion, since, now),
                               self.ops.live(challenger, since, now), now - since, self.config)
        if verdict.action == "promote":
            self._enter(challenger, "promoted", verdict, now)
            self.ops.promote(challenger)
        elif verdict.action == "reject":
            self._enter(challenger, "rejected", verdict, now)
            self.ops.stop_canary()
        return verdict

    def _judge_promoted(self, champion: int, previous: int, since: float, now: float) -> Verdict:
        """Compare the promoted version since promotion with the previous champion over the
        same length of time before it."""
        span = now - since
        verdict = judge_promoted(self.ops.live(champion, since, now),
                                 self.ops.live(previous, since - span, since), span, self.config)
        if verdict.action == "rollback":
            self.ops.rollback()
            return self._rolled_back(champion, previous, verdict, now)
        if verdict.action == "stable":
            self._enter(champion, "stable", verdict, now)
        return verdict

    def _rolled_back(self, version: int, restored: int, verdict: Verdict, now: float) -> Verdict:
        self._enter(version, "rolled_back", verdict, now)
        self._enter(restored, "stable", Verdict("keep", f"restored: v{version} rolled back"), now)
        return verdict

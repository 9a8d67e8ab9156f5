"""The trigger evaluator: each tick of the retraining loop (`tandem watch`), ask every
policy about a fresh window and act on what fires.

A fired retrain claims its trigger window in the durable `TriggerState` before the job is
submitted, under a submission id derived from the window id. A restarted loop therefore
skips a window that already has a job, and a submission repeated for any reason carries
the same id, which Ray's `JobSubmissionClient` refuses to run twice. The price of that
order: a crash between claim and submit leaves the window claimed with no job (at most
one job per window, not at least one). A submit that fails while the loop runs is
retried on the next tick under the same id.

Several retrain triggers firing in one tick get one job between them (one model, one
training run); every fired window is claimed for it. A fired distillation is a job of its
own (another model is trained), claimed and submitted the same way. Alerts go to the `alert` sink and
never submit anything. Gathering, submitting and alerting are injected, so the evaluator
itself needs no Ray, MLflow or clock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from tandem.triggers.policies import Trigger, TriggerResult, TriggerWindow
from tandem.triggers.state import TriggerState

logger = logging.getLogger(__name__)


def submission_id(model: str, window_id: str, action: str = "retrain") -> str:
    """The Ray job submission id of the `action` job for `model`'s trigger window (characters
    other than letters, digits, `.`, `_` and `-` become `-`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"tandem-{action}-{model}-{window_id}")


class TriggerEvaluator:
    """Evaluates `policies` each `tick` and submits at most one job per trigger window.

    Args:
        policies: the triggers to evaluate, in order; the first fired retrain names the job.
        state: cool-downs and claimed windows, kept across restarts.
        gather: `now` -> the window of telemetry to judge.
        submit: (fired result, submission id) -> the submitted job's id.
        alert: receives every fired alert.
    """

    def __init__(self, policies: Sequence[Trigger], state: TriggerState,
                 gather: Callable[[float], TriggerWindow],
                 submit: Callable[[TriggerResult, str], str],
                 alert: Callable[[TriggerResult], None]) -> None:
        self._policies = list(policies)
        self._state = state
        self._gather, self._submit, self._alert = gather, submit, alert
        self._unsent: dict[str, TriggerResult] = {}

    def tick(self, now: float) -> list[TriggerResult]:
        """Evaluate every policy on the window at `now`, alert and submit; returns every verdict."""
        self._retry_unsent()
        window = self._gather(now)
        results = [policy.evaluate(window, self._state, now) for policy in self._policies]
        for result in results:
            if result.fired and result.action == "alert":
                self._alert(result)
        for action in ("retrain", "distill"):
            fired = [result for result in results if result.fired and result.action == action
                     and not self._state.already_submitted(result.window_id)]
            if fired:
                job = submission_id(window.model, fired[0].window_id, action)
                for result in fired:
                    self._state.claim(result.window_id, job)
                self._unsent[job] = fired[0]
                self._send(job)
        return results

    def _retry_unsent(self) -> None:
        for job in list(self._unsent):
            self._send(job)

    def _send(self, job: str) -> None:
        result = self._unsent[job]
        try:
            submitted = self._submit(result, job)
        except Exception:
            logger.exception("%s for %s (%s) not submitted; retrying next tick",
                             result.action, result.window_id, job)
            return
        del self._unsent[job]
        logger.info("%s job %s submitted: %s: %s", result.action, submitted, result.name,
                    result.reason)

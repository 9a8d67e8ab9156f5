"""Recent routing decisions, kept in memory and written as JSON lines for `tandem route explain`.

Recording must cost next to nothing on the request path, so `DecisionLog.record` only
appends a tuple to a bounded deque and bumps two counters (decisions per pool, SLO
misses per tier: what the ingress exports to Prometheus); turning decisions into
dicts and JSON happens when someone asks.

A line's `request` holds what the request asked for under `requested_ttft_ms` and
`requested_tpot_ms` (its headers; null: left to its tier) and the targets it was routed
against under `ttft_target_ms` and `tpot_target_ms` (the decision's: its own, else its
tier's; the request log's names for them). Lines written before decisions carried their
targets hold the raw header under `ttft_target_ms` and no `requested_*`; `tandem route
explain` reads both. A `candidates` entry and `predicted` keep the bare names
(`ttft_ms`, ...): every figure under them is a prediction.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tandem.errors import UserError
from tandem.routing.types import Decision, RequestFeatures


def decision_record(now: float, request: RequestFeatures, decision: Decision,
                    request_id: str | None = None) -> dict[str, Any]:
    """One decision as a JSON-ready dict (the line format of `decisions.jsonl`)."""
    return {
        "time": now,
        "request_id": request_id,
        "request": {"prompt_tokens": request.prompt_tokens, "max_tokens": request.max_tokens,
                    "tier": request.tier, "requested_ttft_ms": request.requested_ttft_ms,
                    "requested_tpot_ms": request.requested_tpot_ms,
                    "max_cost_usd": request.max_cost_usd,
                    "ttft_target_ms": decision.ttft_target_ms,
                    "tpot_target_ms": decision.tpot_target_ms},
        "pool": decision.pool,
        "model": decision.model,
        "reason": decision.reason,
        "predicted_slo_miss": decision.predicted_slo_miss,
        "predicted": {"ttft_ms": decision.predicted_ttft_ms,
                      "tpot_ms": decision.predicted_tpot_ms,
                      "cost_usd": decision.predicted_cost_usd},
        "candidates": [{"pool": pool, "ttft_ms": ttft, "tpot_ms": tpot, "cost_usd": cost,
                        "meets_slo": meets, "within_cost": within}
                       for pool, ttft, tpot, cost, meets, within in decision.candidates],
    }


class DecisionLog:
    """A bounded ring of the most recent decisions plus running counters."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ring: deque[tuple[float, RequestFeatures, Decision, str | None]] = deque(
            maxlen=capacity)
        self.decisions_by_pool: Counter[str] = Counter()
        self.predicted_misses_by_tier: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._ring)

    def record(self, now: float, request: RequestFeatures, decision: Decision,
               request_id: str | None = None) -> None:
        self._ring.append((now, request, decision, request_id))
        self.decisions_by_pool[decision.pool] += 1
        if decision.predicted_slo_miss:
            self.predicted_misses_by_tier[request.tier] += 1

    def records(self, last: int | None = None) -> list[dict[str, Any]]:
        """The most recent decisions (all, or the `last` N), oldest first."""
        entries = list(self._ring)
        if last is not None:
            entries = entries[-last:] if last > 0 else []
        return [decision_record(now, request, decision, request_id)
                for now, request, decision, request_id in entries]

    def to_jsonl(self, last: int | None = None) -> str:
        """The decisions as JSON lines, one per decision, newline-terminated."""
        return "".join(json.dumps(record, separators=(",", ":")) + "\n"
                       for record in self.records(last))


# The fields `format_explain` prints as numbers: a request's targets, the chosen pool's
# predictions and each candidate's (in `predicted` and `candidates`, what the policy predicted).
REQUEST_NUMBERS = ("ttft_target_ms", "tpot_target_ms", "requested_ttft_ms", "requested_tpot_ms",
                   "max_cost_usd")
PREDICTED_NUMBERS = ("ttft_ms", "tpot_ms", "cost_usd")


def _misshapen_field(record: Mapping[str, Any]) -> str | None:
    """What is wrong with the first field `format_explain` could not print, else None."""
    candidates = record.get("candidates") or []
    if not isinstance(candidates, list):
        return f"candidates is {candidates!r}, not a list"
    sections = [("request", record.get("request"), REQUEST_NUMBERS),
                ("predicted", record.get("predicted"), PREDICTED_NUMBERS)]
    sections += [(f"candidates[{index}]", candidate, PREDICTED_NUMBERS)
                 for index, candidate in enumerate(candidates)]
    for name, section, fields in sections:
        section = section or {}
        if not isinstance(section, dict):
            return f"{name} is {section!r}, not an object"
        for field in fields:
            value = section.get(field)
            if value is not None and not isinstance(value, int | float):
                return f"{name}.{field} is {value!r}, not a number"
    return None


def parse_jsonl(text: str, origin: str = "decisions") -> list[dict[str, Any]]:
    """Decision records from JSON lines; blank lines are skipped.

    A line that is not a decision fails the whole read with a `UserError` naming
    `origin`, the line and the field, rather than being skipped: only the ingress writes
    this log, so a bad line means corruption or a hand edit the operator should see and
    fix, and skipping would quietly show fewer decisions than `--last` asked for.
    """
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{origin} line {number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or "pool" not in record:
            raise UserError(f"{origin} line {number}: not a routing decision")
        problem = _misshapen_field(record)
        if problem:
            raise UserError(f"{origin} line {number}: {problem}")
        records.append(record)
    return records


def _number(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def format_explain(records: Iterable[Mapping[str, Any]]) -> str:
    """Human-readable `tandem route explain` output: per decision, the request, the
    choice and why, and every candidate's predictions (chosen marked `*`, a pool that
    meets the targets marked `ok`)."""
    blocks = []
    for record in records:
        request = record.get("request") or {}
        when = record.get("time")
        stamp = (datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                 if isinstance(when, int | float) else "-")
        targets = []
        if request.get("ttft_target_ms") is not None:
            targets.append(f"ttft<={request['ttft_target_ms']:g}ms")
        if request.get("tpot_target_ms") is not None:
            targets.append(f"tpot<={request['tpot_target_ms']:g}ms")
        if request.get("max_cost_usd") is not None:
            targets.append(f"cost<=${request['max_cost_usd']:g}")
        head = (f"{stamp}  {record.get('request_id') or '-'}  tier={request.get('tier', '-')} "
                f"prompt={request.get('prompt_tokens', '-')} max_tokens={request.get('max_tokens', '-')}"
                + (f" {' '.join(targets)}" if targets else ""))
        predicted = record.get("predicted") or {}
        verdict = "predicted SLO miss" if record.get("predicted_slo_miss") else "ok"
        lines = [head,
                 f"  -> {record['pool']} ({verdict}): {record.get('reason', '')}; predicted "
                 f"ttft {_number(predicted.get('ttft_ms'), '.1f')} ms, "
                 f"tpot {_number(predicted.get('tpot_ms'), '.2f')} ms, "
                 f"${_number(predicted.get('cost_usd'), '.6f')}"]
        candidates = record.get("candidates") or []
        if candidates:
            lines.append(f"     {'':1} {'pool':<14} {'ttft ms':>9} {'tpot ms':>8} "
                         f"{'cost $':>10}  slo")
            for candidate in candidates:
                mark = "*" if candidate.get("pool") == record["pool"] else " "
                meets = "ok" if candidate.get("meets_slo") else "miss"
                if not candidate.get("within_cost", True):
                    meets += " over-cost"
                lines.append(f"     {mark} {candidate.get('pool', '?'):<14} "
                             f"{_number(candidate.get('ttft_ms'), '9.1f'):>9} "
                             f"{_number(candidate.get('tpot_ms'), '8.2f'):>8} "
                             f"{_number(candidate.get('cost_usd'), '10.6f'):>10}  {meets}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

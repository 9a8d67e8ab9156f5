"""Request traces: arrival times and sizes, in the Azure LLM inference trace format.

The planner sizes fleets from real traffic shape, not averages: bursts and the
long tail of prompt lengths are what break latency targets. A trace is the CSV
`TIMESTAMP,ContextTokens,GeneratedTokens`; timestamps may be datetimes or seconds. An
optional `tier` column names each request's tier (the planner's per-tier targets).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np

from tandem.errors import UserError

REQUIRED_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
TIER_COLUMN = "tier"
BUNDLED_TRACE = "azure_conv_2023.csv"


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival; `arrival_s` starts at 0."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str = ""
    tiers: np.ndarray | None = None  # tier name per request, from the trace's `tier` column

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        """Span of arrivals; at least one second so rates stay finite."""
        return max(1.0, float(self.arrival_s[-1] - self.arrival_s[0])) if len(self) else 1.0

    def scaled(self, rate_scale: float) -> Trace:
        """The same requests arriving `rate_scale` times as fast."""
        if rate_scale <= 0:
            raise UserError(f"--rate-scale must be positive, got {rate_scale}")
        return Trace(self.arrival_s / rate_scale, self.prompt_tokens, self.output_tokens,
                     self.source, self.tiers)

    def head(self, count: int) -> Trace:
        return self.select(slice(0, count))

    def select(self, rows: slice | np.ndarray) -> Trace:
        """The requests at `rows` (a slice or a boolean mask), in order."""
        return Trace(self.arrival_s[rows], self.prompt_tokens[rows], self.output_tokens[rows],
                     self.source, None if self.tiers is None else self.tiers[rows])


def _parse_time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    text = value.strip()
    if "." in text:  # Azure writes 7 fractional digits; datetime accepts at most 6
        whole, fraction = text.split(".", 1)
        text = f"{whole}.{fraction[:6]}"
    return datetime.fromisoformat(text).timestamp()


def bundled_trace_path() -> Path:
    return Path(str(resources.files("tandem").joinpath(f"assets/traces/{BUNDLED_TRACE}")))


def load_trace(path: Path | str) -> Trace:
    """Read and validate a trace; every problem becomes a `UserError` naming the row."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as error:
        raise UserError(f"cannot read trace {path}: {error.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise UserError(f"trace {path} lacks column(s) {', '.join(missing)}; "
                            f"expected {','.join(REQUIRED_COLUMNS)}")
        reader.fieldnames = header
        has_tiers = TIER_COLUMN in header
        times, prompts, outputs, tiers = [], [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                times.append(_parse_time(row["TIMESTAMP"]))
                prompts.append(int(row["ContextTokens"]))
                outputs.append(int(row["GeneratedTokens"]))
            except (TypeError, ValueError):
                raise UserError(f"trace {path} line {line}: cannot parse {dict(row)}") from None
            if prompts[-1] < 1 or outputs[-1] < 1:
                raise UserError(f"trace {path} line {line}: token counts must be >= 1")
            if has_tiers:
                tiers.append((row[TIER_COLUMN] or "").strip())
                if not tiers[-1]:
                    raise UserError(f"trace {path} line {line}: empty tier")
    if not times:
        raise UserError(f"trace {path} has no requests")
    arrival = np.asarray(times, dtype=float)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order] - arrival[order][0]
    return Trace(arrival, np.asarray(prompts, dtype=np.int64)[order],
                 np.asarray(outputs, dtype=np.int64)[order], str(path),
                 np.asarray(tiers)[order] if has_tiers else None)

"""What a fleet must serve: a trace, its tiers with their latency targets, and the share of
each tier's requests that must meet them.

Attainment alone can pass an overloaded fleet: a tier without a TTFT target would accept
any wait, and a queue that grows through the trace meets a loose target until the trace
ends. So a tier without a TTFT target is judged against a bound on waiting (`MAX_WAIT_S`,
`--max-wait-s`), and a fleet whose wait grows from the first tenth of the arrivals to the
last fails whatever the targets say.

A plan without tiers is a plan with one tier. Each request belongs to one tier: from the
trace's `tier` column when it has one, else drawn by the tiers' shares (seeded, so a plan
is reproducible). Attainment is judged per tier from simulated measurements; a fleet
passes when every tier reaches the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tandem.errors import UserError
from tandem.planner.simulator import SimulationResult, Slo, attainment_by_tier
from tandem.planner.trace import Trace
from tandem.routing.types import RequestFeatures

NO_TARGET_MS = 1e9  # what a router is told for a target the tier does not set
MAX_WAIT_S = 30.0  # the TTFT bound of a tier without a TTFT target
WAIT_WINDOW = 0.1  # queue growth compares the first and last tenth of the arrivals
WAIT_GROWTH_S = 5.0  # a mean wait this much longer in the last tenth means the queue grows
SHARE_TOLERANCE = 1e-6
TIER_SEED = 0
DEFAULT_TIER = "all"


@dataclass(frozen=True)
class Tier:
    """A class of requests with its own targets; an unset target is infinite."""

    name: str
    share: float
    ttft_ms: float = math.inf
    tpot_ms: float = math.inf
    min_quality: float | None = None  # exact match a model needs for this tier (routed plans)

    @property
    def slo(self) -> Slo:
        return Slo(ttft_ms=self.ttft_ms, tpot_ms=self.tpot_ms)

    def describe(self) -> str:
        parts = [f"TTFT <= {self.ttft_ms:g} ms" if math.isfinite(self.ttft_ms) else "",
                 f"TPOT <= {self.tpot_ms:g} ms" if math.isfinite(self.tpot_ms) else ""]
        return " and ".join(part for part in parts if part)


def make_tier(name: str, share: float, ttft_ms: float | None, tpot_ms: float | None,
              min_quality: float | None = None) -> Tier:
    """A validated tier: at least one positive target, a share in (0, 1], a quality floor
    in [0, 1] if any."""
    if ttft_ms is None and tpot_ms is None:
        raise UserError(f"tier {name!r} has no targets: give ttft_ms, tpot_ms or both")
    for key, value in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"tier {name!r}: {key} must be a positive number, got {value}")
    if not 0 < share <= 1:
        raise UserError(f"tier {name!r}: share must be in (0, 1], got {share}")
    if min_quality is not None and not 0 <= min_quality <= 1:
        raise UserError(f"tier {name!r}: min_quality must be in [0, 1], got {min_quality}")
    return Tier(name, share, math.inf if ttft_ms is None else float(ttft_ms),
                math.inf if tpot_ms is None else float(tpot_ms), min_quality)


def parse_tier(text: str) -> Tier:
    """`NAME:share=0.6,ttft_ms=400,tpot_ms=40[,min_quality=0.9]` (the `--tier` flag) -> Tier."""
    name, colon, rest = text.partition(":")
    name = name.strip()
    if not colon or not name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--tier {text!r}: expected NAME:share=S,ttft_ms=T,tpot_ms=P")
    fields: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or key not in ("share", "ttft_ms", "tpot_ms", "min_quality"):
            raise UserError(f"--tier {text!r}: unknown field {item!r} "
                            "(share, ttft_ms, tpot_ms, min_quality)")
        try:
            fields[key] = float(value)
        except ValueError:
            raise UserError(f"--tier {text!r}: {key} is not a number: {value!r}") from None
    if "share" not in fields:
        raise UserError(f"--tier {text!r}: share is required")
    return make_tier(name, fields["share"], fields.get("ttft_ms"), fields.get("tpot_ms"),
                     fields.get("min_quality"))


@dataclass(frozen=True)
class Demand:
    """The requests a fleet must serve, each with its tier, and the attainment target."""

    trace: Trace
    tiers: tuple[Tier, ...]
    tier_of_request: np.ndarray  # tier name per request
    attainment: float
    max_wait_s: float = MAX_WAIT_S

    def tier(self, name: str) -> Tier:
        return next(tier for tier in self.tiers if tier.name == name)

    def judged_ttft_ms(self, tier: Tier) -> float:
        """The TTFT a tier's requests are judged against: its target, else the wait bound."""
        return tier.ttft_ms if math.isfinite(tier.ttft_ms) else self.max_wait_s * 1e3

    def describe(self, tier: Tier) -> str:
        """The tier's targets, with the wait bound where it stands in for a TTFT target."""
        if math.isfinite(tier.ttft_ms):
            return tier.describe()
        return f"{tier.describe()} (TTFT <= {self.max_wait_s:g} s, the wait bound)"

    @property
    def strictest(self) -> Slo:
        """The tightest TTFT and TPOT any tier sets: the simulator's summary percentiles and
        the router's idea of what fast pools are for."""
        return Slo(ttft_ms=min(tier.ttft_ms for tier in self.tiers),
                   tpot_ms=min(tier.tpot_ms for tier in self.tiers), attainment=self.attainment)

    def request_features(self) -> list[RequestFeatures]:
        """What a router sees of each request: its size and its tier's targets."""
        targets = {tier.name: (min(tier.ttft_ms, NO_TARGET_MS), min(tier.tpot_ms, NO_TARGET_MS))
                   for tier in self.tiers}
        return [RequestFeatures(int(prompt), int(output), *targets[tier])
                for prompt, output, tier in zip(self.trace.prompt_tokens,
                                                self.trace.output_tokens, self.tier_of_request)]


def check_shares(tiers: Sequence[Tier]) -> None:
    """Shares must sum to 1 (they split the trace's requests between the tiers)."""
    total = sum(tier.share for tier in tiers)
    if abs(total - 1) > SHARE_TOLERANCE:
        raise UserError(f"tier shares sum to {total:g}, not 1: "
                        + ", ".join(f"{tier.name}={tier.share:g}" for tier in tiers))


def check_max_wait(max_wait_s: float) -> None:
    """The wait bound must be a positive, finite number of seconds."""
    if not (max_wait_s > 0 and math.isfinite(max_wait_s)):
        raise UserError(f"--max-wait-s must be a positive number of seconds, got {max_wait_s:g}")


def build_demand(trace: Trace, tiers: Sequence[Tier], attainment: float,
                 max_wait_s: float = MAX_WAIT_S) -> Demand:
    """Assign each request a tier: the trace's own `tier` column, else drawn by share.

    Raises UserError for shares that do not sum to 1, duplicate tier names, a trace tier
    that no --tier flag gives targets for, or a bad attainment or wait bound.
    """
    if not 0 < attainment <= 1:
        raise UserError(f"--attainment must be in (0, 1], got {attainment}")
    check_max_wait(max_wait_s)
    names = [tier.name for tier in tiers]
    if not tiers or len(set(names)) != len(names):
        raise UserError(f"tiers must be named once each, got {', '.join(names) or 'none'}")
    if trace.tiers is not None:
        unknown = sorted(set(trace.tiers.tolist()) - set(names))
        if unknown:
            raise UserError(f"trace {trace.source} has tier(s) {', '.join(unknown)} with no "
                            "--tier targets")
        return Demand(trace, tuple(tiers), trace.tiers, attainment, max_wait_s)
    check_shares(tiers)
    total = sum(tier.share for tier in tiers)
    rng = np.random.default_rng(TIER_SEED)
    drawn = rng.choice(np.asarray(names), size=len(trace), p=[t.share / total for t in tiers])
    return Demand(trace, tuple(tiers), drawn, attainment, max_wait_s)


@dataclass(frozen=True)
class Judgement:
    """Simulated attainment per tier, and whether the fleet passes: every tier met the
    target and the queue did not grow."""

    by_tier: dict[str, float]
    overall: float
    attained: bool  # every tier reached the attainment target
    overload: str | None = None  # why the fleet is overloaded whatever the targets say

    @property
    def passes(self) -> bool:
        return self.attained and self.overload is None

    @property
    def worst(self) -> float:
        return min(self.by_tier.values())

    def describe(self) -> str:
        text = ", ".join(f"{tier} {value:.4f}" for tier, value in self.by_tier.items())
        return text + (f"; fails: {self.overload}" if self.overload else "")


def mean_wait_s(trace: Trace, result: SimulationResult) -> tuple[float, float]:
    """Mean TTFT, seconds, of the served requests among the first and the last tenth of
    the arrivals (NaN where none was served). The simulator's TTFT is queueing plus one
    prefill, so its growth is the queue's."""
    size = max(1, math.ceil(len(trace) * WAIT_WINDOW))
    wait = result.first_token_s - trace.arrival_s

    def mean(window: np.ndarray) -> float:
        served = window[np.isfinite(window)]
        return float(served.mean()) if served.size else math.nan

    return mean(wait[:size]), mean(wait[-size:])


def queue_growth(trace: Trace, result: SimulationResult) -> str | None:
    """Why the fleet's queue grows through the trace (the last tenth's mean wait over the
    first's by more than `WAIT_GROWTH_S`), or None when it does not."""
    first, last = mean_wait_s(trace, result)
    if not last > first + WAIT_GROWTH_S:
        return None
    return f"queue grows: mean wait {last:.1f} s in the last tenth vs {first:.1f} s in the first"


def judge(demand: Demand, result: SimulationResult) -> Judgement:
    """Per-tier attainment from the simulated TTFT and TPOT of every request (a request
    the fleet rejected is a miss; a tier without a TTFT target is held to the wait
    bound), and whether the queue grows."""
    targets = {tier.name: (demand.judged_ttft_ms(tier), tier.tpot_ms) for tier in demand.tiers}
    by_tier = attainment_by_tier(demand.trace, result, demand.tier_of_request, targets)
    counts = {name: int((demand.tier_of_request == name).sum()) for name in targets}
    present = {name: value for name, value in by_tier.items() if counts[name]}
    overall = sum(present[name] * counts[name] for name in present) / max(1, len(demand.trace))
    return Judgement(by_tier=present, overall=overall,
                     attained=all(value >= demand.attainment for value in present.values()),
                     overload=queue_growth(demand.trace, result))

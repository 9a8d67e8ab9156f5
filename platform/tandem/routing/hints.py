"""Routing hints from request headers, validated strictly.

A malformed hint is the client's mistake and must come back as 400 naming the header,
not be replaced silently by a default: a client that believes it asked for a 200 ms
TTFT and got the batch tier would never find out why its latency is bad.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tandem.errors import UserError
from tandem.routing.config import TIERS
from tandem.routing.types import RequestFeatures

TTFT_HEADER = "x-tandem-ttft-ms"
TPOT_HEADER = "x-tandem-tpot-ms"
TIER_HEADER = "x-tandem-tier"
MAX_COST_HEADER = "x-tandem-max-cost"
MIN_QUALITY_HEADER = "x-tandem-min-quality"
HINT_HEADERS: tuple[str, ...] = (TTFT_HEADER, TPOT_HEADER, TIER_HEADER, MAX_COST_HEADER,
                                 MIN_QUALITY_HEADER)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class InvalidRoutingHint(UserError):
    """A routing header that is not a valid value; the ingress answers 400 invalid_request_error."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header = header


@dataclass(frozen=True, slots=True)
class RoutingHints:
    """What the client asked for; None where it left the choice to the model's defaults.

    `requested_ttft_ms` and `requested_tpot_ms` are latency targets as asked for, before the
    tier fills what the request left out (`RoutingConfig.latency_targets`)."""

    requested_ttft_ms: float | None = None
    requested_tpot_ms: float | None = None
    tier: str | None = None
    max_cost_usd: float | None = None
    min_quality: float | None = None

    def features(self, prompt_tokens: int, max_tokens: int,
                 default_tier: str = "standard") -> RequestFeatures:
        """The request as the routing policy sees it."""
        return RequestFeatures(prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                               requested_ttft_ms=self.requested_ttft_ms,
                               requested_tpot_ms=self.requested_tpot_ms,
                               tier=self.tier or default_tier, max_cost_usd=self.max_cost_usd,
                               min_quality=self.min_quality)


def _positive_number(header: str, raw: str) -> float:
    text = raw.strip()
    if not _NUMBER.fullmatch(text):
        raise InvalidRoutingHint(header, f"expected a positive number, got {raw!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRoutingHint(header, f"expected a finite number, got {raw!r}")
    if value <= 0:
        raise InvalidRoutingHint(header, f"must be greater than 0, got {raw!r}")
    return value


def _fraction(header: str, raw: str) -> float:
    text = raw.strip()
    if not _NUMBER.fullmatch(text) or not 0 <= float(text) <= 1:
        raise InvalidRoutingHint(header, f"expected a number in [0, 1], got {raw!r}")
    return float(text)


def parse_routing_hints(headers: Mapping[str, str]) -> RoutingHints:
    """Read the `x-tandem-*` routing headers (names case-insensitive).

    Raises:
        InvalidRoutingHint: a value is non-numeric, not positive, NaN or infinite, the
            tier is not one of interactive, standard, batch, or the quality floor is
            outside [0, 1].
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in HINT_HEADERS:
            found[lowered] = value
    if not found:
        return RoutingHints()
    tier = found.get(TIER_HEADER)
    if tier is not None:
        tier = tier.strip().lower()
        if tier not in TIERS:
            raise InvalidRoutingHint(
                TIER_HEADER, f"unknown tier {found[TIER_HEADER]!r}; choose from {', '.join(TIERS)}")
    numbers = {header: _positive_number(header, found[header])
               for header in (TTFT_HEADER, TPOT_HEADER, MAX_COST_HEADER) if header in found}
    floor = found.get(MIN_QUALITY_HEADER)
    return RoutingHints(requested_ttft_ms=numbers.get(TTFT_HEADER),
                        requested_tpot_ms=numbers.get(TPOT_HEADER), tier=tier,
                        max_cost_usd=numbers.get(MAX_COST_HEADER),
                        min_quality=None if floor is None else _fraction(MIN_QUALITY_HEADER,
                                                                         floor))

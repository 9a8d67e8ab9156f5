"""Per-model routing settings: what each tier means, what it may spend, how fast to learn.

A request names a tier (`x-tandem-tier`) or gives explicit targets; the tier's targets
fill whatever the request leaves out. They live in the Serve config per model, because
"interactive" means something different for a tiny CPU model than for a 70B model on
H100s. Two presets ship: one for GPU pools of a 7-8B model, one for the local CPU pools.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.routing.types import RequestFeatures

TIERS: tuple[str, ...] = ("interactive", "standard", "batch")
Tier = Literal["interactive", "standard", "batch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierTargets(_Strict):
    """Default latency targets of one tier and its optional spend cap."""

    ttft_ms: float = Field(gt=0, description="Time to first token target, milliseconds.")
    tpot_ms: float = Field(gt=0, description="Time per output token target, milliseconds.")
    budget_per_hour: float | None = Field(
        None, gt=0, description="USD/hour this tier may spend; above it, requests spill to "
                                "the cheapest pool regardless of latency. None: no cap.")
    min_quality: float | None = Field(
        None, ge=0, le=1, description="Exact match in [0, 1] a model needs to take this tier's "
                                      "requests when several models serve one name "
                                      "(x-tandem-min-quality overrides it). None: any model.")


class RoutingConfig(_Strict):
    """Routing settings of one served model (the `routing:` block of its Serve config)."""

    tiers: dict[Tier, TierTargets] = Field(description="Targets per tier; all three required.")
    default_tier: Tier = Field("standard", description="Tier of a request that names none.")
    ewma_alpha: float = Field(
        0.2, gt=0, le=1, description="Weight of a new observation in the observed/predicted "
                                     "latency ratios (higher adapts faster, noisier).")
    stale_half_life_s: float | None = Field(
        600.0, gt=0, description="A pool's learned correction decays halfway back to the "
                                 "prior after this long without observations. None: never.")
    probe_after_s: float | None = Field(
        10.0, gt=0, description="An idle pool unobserved this long gets a one-token probe "
                                "request, so a pool judged slow while it was loaded can prove "
                                "it recovered. None: never probe.")
    headroom: float = Field(
        0.8, gt=0, le=1, description="Share of each latency target a pool's prediction may "
                                     "use to win on price; when no pool is that far inside, "
                                     "the cheapest pool meeting the targets at all wins.")
    max_queued_per_replica: float = Field(
        64, gt=0, description="A pool with this many waiting requests per replica is "
                              "saturated and skipped (unless every pool is).")

    @model_validator(mode="after")
    def _every_tier(self) -> RoutingConfig:
        missing = [tier for tier in TIERS if tier not in self.tiers]
        if missing:
            raise ValueError(f"routing tiers missing: {', '.join(missing)}")
        return self

    def targets(self, tier: str) -> TierTargets:
        """The tier's targets; an unknown tier (never from a header) gets the default's."""
        return self.tiers.get(tier) or self.tiers[self.default_tier]

    def latency_targets(self, request: RequestFeatures) -> tuple[float, float]:
        """(TTFT, TPOT) ms a request is routed and judged against: its own, else its tier's.

        Worked out once per request, by the policy (or the router, for a policy that knows no
        tiers), and carried on its `Decision` from there."""
        tier = self.targets(request.tier)
        return (request.requested_ttft_ms or tier.ttft_ms,
                request.requested_tpot_ms or tier.tpot_ms)

    def quality_floor(self, request: RequestFeatures) -> float | None:
        """The exact match a model must reach to answer `request`: its own, else its tier's."""
        if request.min_quality is not None:
            return request.min_quality
        return self.targets(request.tier).min_quality

    def strictest_targets(self) -> tuple[float, float]:
        """The tightest TTFT and TPOT (ms) any tier has: what the fastest pools are for."""
        return (min(tier.ttft_ms for tier in self.tiers.values()),
                min(tier.tpot_ms for tier in self.tiers.values()))

    @classmethod
    def gpu_defaults(cls) -> RoutingConfig:
        """A 7-8B model on datacenter GPUs: interactive needs H100-class decode speed."""
        return cls(tiers={
            "interactive": TierTargets(ttft_ms=300, tpot_ms=25),
            "standard": TierTargets(ttft_ms=1000, tpot_ms=60),
            "batch": TierTargets(ttft_ms=15000, tpot_ms=250),
        })

    @classmethod
    def local_cpu_defaults(cls) -> RoutingConfig:
        """The tiny model on the local CPU pools (~30-120 ms to first token when idle).

        Local pools restart and slow down in seconds (two engines share two cores), so
        learned corrections fade with a 30 s half-life instead of ten minutes."""
        return cls(stale_half_life_s=30.0, tiers={
            "interactive": TierTargets(ttft_ms=250, tpot_ms=40),
            "standard": TierTargets(ttft_ms=1000, tpot_ms=150),
            "batch": TierTargets(ttft_ms=20000, tpot_ms=1000),
        })

"""The Tandem policy: the cheapest pool predicted to meet the request's latency targets.

For every healthy, unsaturated pool the latency model predicts TTFT and TPOT given the
pool's current load, and the same `tandem.perf.join_pool` pass prices the request: the
rent of the replica time it takes on a full replica of that pool (its load does not make
a busy pool look cheap). Among the pools meeting both targets (and `max_cost_usd`, if
set) the cheapest wins: first among those predicted inside `headroom` (80 %) of each
target, else among all that meet them, since a pool filled to its targets' edge misses
about as often as it meets them (the planner's H100 + H200 fleets for 70B measured it).
A request with looser targets than the strictest tier's first considers the pools too
slow for that tier (`_leave_fast_pools_free`). If none meets them, the fastest relative
to the targets wins (the smallest of predicted/target over TTFT and TPOT), and the
decision is marked an SLO miss. A tier whose spend rate has reached its cap spills to the
cheapest pool whatever its latency.

A cold pool (scaled to zero, a replica to be started) is predicted like an idle one plus
its remaining cold start: a request whose targets allow the wait queues there (and its
arrival is what makes Serve start the replica), others spill to a warm pool. Either way
the reason says so.

Everything the decision used is in the returned `Decision` (one `Candidate` per pool)
so `tandem route explain` can show why. Pure: pools, spend rates and `now` come in as
data; the latency model's corrections change only through `observe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tandem.perf import ReplicaModel, idle_limits, join_pool
from tandem.routing.config import RoutingConfig
from tandem.routing.latency import LatencyModel
from tandem.routing.policy import NoHealthyPool
from tandem.routing.types import Candidate, Decision, PoolState, RequestFeatures


class LatencyCostPolicy:
    """Routes each request to the cheapest pool predicted to meet its targets.

    Args:
        latency: the per-pool latency model, or pool name -> roofline prior to build one.
        config: tier targets, budget caps and learning rate; GPU defaults when omitted.
    """

    def __init__(self, latency: LatencyModel | Mapping[str, ReplicaModel],
                 config: RoutingConfig | None = None) -> None:
        self.config = config or RoutingConfig.gpu_defaults()
        if not isinstance(latency, LatencyModel):
            latency = LatencyModel(latency, alpha=self.config.ewma_alpha,
                                   stale_half_life_s=self.config.stale_half_life_s)
        self.latency = latency
        self._spend: dict[str, float] = {}
        # pool -> (longest prompt, longest context) its prior serves idle within the
        # strictest targets (`tandem.perf.idle_limits`; priors do not change)
        self._strict_limits: dict[str, tuple[float, float]] = {}

    def set_spend_rates(self, per_tier: Mapping[str, float]) -> None:
        """The current spend rate of each tier, USD/hour (the caller measures it)."""
        self._spend = dict(per_tier)

    def observe(self, pool: PoolState, request: RequestFeatures, now: float, *,
                ttft_ms: float | None = None, tpot_ms: float | None = None) -> None:
        """Feed one observation to the latency model (see `LatencyModel.observe`)."""
        self.latency.observe(pool, request, now, ttft_ms=ttft_ms, tpot_ms=tpot_ms)

    def _evaluate(self, request: RequestFeatures, pools: Sequence[PoolState], now: float,
                  ttft_target: float, tpot_target: float, queue_limit: float | None,
                  ) -> tuple[list[Candidate], Candidate | None, list[PoolState]]:
        """Predict and price every usable pool.

        Returns the candidates, the cheapest one meeting targets and max cost (or None),
        and the healthy pools skipped as saturated.
        """
        latency = self.latency
        apply = latency.apply
        cached = latency.pool_constants
        prompt = request.prompt_tokens
        output = request.max_tokens
        max_cost = request.max_cost_usd
        new = tuple.__new__
        candidates: list[Candidate] = []
        saturated: list[PoolState] = []
        best = roomy = None
        ttft_room = ttft_target * self.config.headroom
        tpot_room = tpot_target * self.config.headroom
        for pool in pools:
            replicas = pool.replicas
            if not pool.healthy or replicas <= 0:
                continue
            if queue_limit is not None and pool.queued >= queue_limit * replicas:
                saturated.append(pool)
                continue
            name = pool.name
            joining = join_pool(cached.get(name) or latency.constants(pool), pool.price_per_hour,
                                pool.in_flight, pool.queued, replicas, prompt, output,
                                pool.mean_owed_output)
            ttft, tpot = apply(name, joining, now)
            ttft += pool.cold_start_ms
            cost = joining[5]  # tandem.perf.JOINING
            meets = ttft <= ttft_target and tpot <= tpot_target
            within = max_cost is None or cost <= max_cost
            candidate = new(Candidate, (name, ttft, tpot, cost, meets, within))
            candidates.append(candidate)
            if meets and within and (best is None or cost < best[3] or (
                    cost == best[3] and (ttft, name) < (best[1], best[0]))):
                best = candidate
            if meets and within and ttft <= ttft_room and tpot <= tpot_room and (
                    roomy is None or cost < roomy[3] or (
                        cost == roomy[3] and (ttft, name) < (roomy[1], roomy[0]))):
                roomy = candidate
        return candidates, roomy or best, saturated

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        decision = self._pick(request, pools, now)
        cold = [pool for pool in pools if pool.cold_start_ms and pool.healthy]
        if not cold:
            return decision
        return _with_cold_note(decision, cold, *self.config.latency_targets(request))

    def _pick(self, request: RequestFeatures, pools: Sequence[PoolState], now: float) -> Decision:
        config = self.config
        tier = config.targets(request.tier)
        ttft_target, tpot_target = config.latency_targets(request)
        candidates, best, saturated = self._evaluate(
            request, pools, now, ttft_target, tpot_target, config.max_queued_per_replica)
        note = ""
        if not candidates:
            if not saturated:
                raise NoHealthyPool("no healthy pool with replicas")
            candidates, best, _ = self._evaluate(request, saturated, now, ttft_target,
                                                 tpot_target, None)
            note = "all pools saturated; "
        budget = tier.budget_per_hour
        if budget is not None:
            spend = self._spend.get(request.tier, 0.0)
            if spend >= budget:
                pool = _cheapest([c for c in candidates if c.within_cost] or candidates)
                reason = (f"{note}{request.tier} tier budget reached (${spend:.2f}/h >= "
                          f"${budget:.2f}/h): cheapest pool")
                return _decision(pool, reason, candidates, not pool.meets_slo)
        if best is not None:
            reason = f"{note}cheapest meeting TTFT<={ttft_target:g}ms TPOT<={tpot_target:g}ms"
            headroom = config.headroom
            if best[1] <= ttft_target * headroom and best[2] <= tpot_target * headroom:
                reason += f" with {1 - headroom:.0%} to spare"
            slower = self._leave_fast_pools_free(request, pools, candidates, ttft_target,
                                                 tpot_target)
            if slower is not None and slower is not best:
                best = slower
                ttft_strict, tpot_strict = config.strictest_targets()
                reason += (f" among pools too slow for TTFT<={ttft_strict:g}ms "
                           f"TPOT<={tpot_strict:g}ms by their prior (the fast ones stay free "
                           "for that tier)")
            return Decision(best[0], reason, best[1], best[2], best[3], False, tuple(candidates))
        affordable = [c for c in candidates if c.within_cost]
        if not affordable:
            pool = _cheapest(candidates)
            reason = f"{note}no pool within max cost ${request.max_cost_usd:g}: cheapest"
            return _decision(pool, reason, candidates, not pool.meets_slo)
        pool = min(affordable, key=lambda c: (max(c.ttft_ms / ttft_target, c.tpot_ms / tpot_target),
                                              c.cost_usd, c.pool))
        reason = (f"{note}no pool meets TTFT<={ttft_target:g}ms TPOT<={tpot_target:g}ms: "
                  "fastest")
        return _decision(pool, reason, candidates, True)


    def _leave_fast_pools_free(self, request: RequestFeatures, pools: Sequence[PoolState],
                               candidates: list[Candidate], ttft_target: float,
                               tpot_target: float) -> Candidate | None:
        """A request with looser targets than the strictest tier's goes to the cheapest pool
        that meets its own targets but whose prior says it could not meet the strictest ones
        even idle, when there is one: the pools fast enough for the strictest tier stay free
        for it. Without this, loose traffic fills the fast pools first (they are often the
        cheapest per request) and the tight tier they were bought for queues behind it.
        By the prior, idle: what a pool is for is its hardware, not its current load nor
        corrections learned under load (on the local pools, whose speeds are close, either
        flipped their roles). None: no such pool, keep the cheapest."""
        ttft_strict, tpot_strict = self.config.strictest_targets()
        if ttft_target <= ttft_strict and tpot_target <= tpot_strict:
            return None
        prompt = request.prompt_tokens
        context = prompt + 0.5 * request.max_tokens
        limits = self._strict_limits
        by_name: dict[str, PoolState] | None = None
        slower = None
        for candidate in candidates:
            if not (candidate.meets_slo and candidate.within_cost):
                continue
            if slower is not None and (candidate.cost_usd, candidate.ttft_ms, candidate.pool) >= (
                    slower.cost_usd, slower.ttft_ms, slower.pool):
                continue
            pool_limits = limits.get(candidate.pool)
            if pool_limits is None:
                if by_name is None:
                    by_name = {pool.name: pool for pool in pools}
                pool_limits = limits[candidate.pool] = idle_limits(
                    self.latency.constants(by_name[candidate.pool]), ttft_strict / 1e3,
                    tpot_strict / 1e3)
            if prompt > pool_limits[0] or context > pool_limits[1]:
                slower = candidate
        return slower


def _with_cold_note(decision: Decision, cold: list[PoolState], ttft_target: float,
                    tpot_target: float) -> Decision:
    """The decision, its reason saying whether it waits for a cold pool, or spilled from one
    that would meet the targets but for its start."""
    notes = []
    for pool in cold:
        wait = f"~{pool.cold_start_ms / 1e3:.0f} s to start"
        if pool.name == decision.pool:
            notes.append(f"{pool.name} is cold: waits for its first replica ({wait})")
            continue
        candidate = next((c for c in decision.candidates if c.pool == pool.name), None)
        if candidate is not None and not candidate.meets_slo and candidate.tpot_ms <= tpot_target \
                and candidate.ttft_ms - pool.cold_start_ms <= ttft_target:
            notes.append(f"spilled from cold {pool.name} ({wait} breaks TTFT<={ttft_target:g}ms)")
        else:
            notes.append(f"cold {pool.name} passed over ({wait})")
    return replace(decision, reason=f"{decision.reason}; {'; '.join(notes)}")


def _cheapest(candidates: list[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.cost_usd, c.ttft_ms, c.pool))


def _decision(chosen: Candidate, reason: str, candidates: list[Candidate],
              predicted_slo_miss: bool) -> Decision:
    return Decision(pool=chosen.pool, reason=reason, predicted_ttft_ms=chosen.ttft_ms,
                    predicted_tpot_ms=chosen.tpot_ms, predicted_cost_usd=chosen.cost_usd,
                    predicted_slo_miss=predicted_slo_miss, candidates=tuple(candidates))

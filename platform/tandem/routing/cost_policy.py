"""The Tandem policy: the cheapest pool predicted to meet the request's latency targets.

Every healthy, unsaturated pool prices the request: the rent of the replica time it
takes on a full replica of that pool (`tandem.perf.replica_seconds_at_capacity`; its
load does not make a busy pool look cheap). In that order, lowest rent first, the
latency model predicts each pool's TTFT and TPOT given its current load (`join_pool`),
until the choice is settled: pools renting for more are not predicted, as they could
not be chosen (the decision's reason counts them). Among the pools meeting both targets
(and `max_cost_usd`, if set) the cheapest wins: first among those predicted inside
`headroom` (80 %) of each target, else among all that meet them, since a pool filled to
its targets' edge misses about as often as it meets them (the planner's H100 + H200
fleets for 70B measured it). A request with looser targets than the strictest tier's
first considers the pools too slow for that tier (`_strict_limits_of`). If none
meets them, the fastest relative to the targets wins (the smallest of predicted/target
over TTFT and TPOT), and the decision is marked an SLO miss. A tier whose spend rate has
reached its cap spills to the cheapest pool whatever its latency (every pool predicted).

A cold pool (scaled to zero, a replica to be started) is predicted like an idle one plus
its remaining cold start: a request whose targets allow the wait queues there (and its
arrival is what makes Serve start the replica), others spill to a warm pool. Either way
the reason says so.

Everything the decision used is in the returned `Decision` (the targets it resolved from
the request and its tier, one `Candidate` per pool predicted), so the ingress judges the
request against the same targets and `tandem route explain` can show why. Pure: pools,
spend rates and `now` come in as data; the latency model's corrections change only
through `observe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tandem.perf import PoolConstants, ReplicaModel, batch_slots, idle_limits, join_pool
from tandem.perf.pool import SECONDS_PER_HOUR, replica_seconds_at_capacity
from tandem.routing.config import RoutingConfig
from tandem.routing.latency import LatencyModel
from tandem.routing.policy import NoHealthyPool
from tandem.routing.residual import cell
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
        self._strictest = self.config.strictest_targets()
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

    def observe_waiting(self, pool: PoolState, request: RequestFeatures, now: float,
                        waited_ms: float) -> None:
        """A request still waiting for its first token (see `LatencyModel.observe_waiting`)."""
        self.latency.observe_waiting(pool, request, now, waited_ms)

    def _evaluate(self, request: RequestFeatures, pools: Sequence[PoolState], now: float,
                  ttft_target: float, tpot_target: float, queue_limit: float | None,
                  exhaustive: bool) -> tuple[list[Candidate], Candidate | None, bool, int,
                                             list[PoolState]]:
        """Predict the usable pools, lowest rent for this request first.

        Returns the candidates, the one to choose among those meeting the targets and max
        cost (or None), whether it was chosen among the pools too slow for the strictest
        tier (`_strict_limits_of`), how many pools were left unpredicted, and the
        healthy pools skipped as saturated.
        Unless `exhaustive`, prediction stops once the choice is settled: the rent does
        not depend on the load, so a pool renting for more than the settled one could not
        be chosen and is left unpredicted. That is what keeps a decision over a teacher's
        and its students' pools from costing a prediction per pool.
        """
        latency = self.latency
        apply = latency.apply
        residuals = latency.residuals
        cached = latency.pool_constants
        prompt = request.prompt_tokens
        output = request.max_tokens
        max_cost = request.max_cost_usd
        ttft_strict, tpot_strict = self._strictest
        loose = ttft_target > ttft_strict or tpot_target > tpot_strict
        context = prompt + 0.5 * output
        size = prompt + output
        strict_limits = self._strict_limits
        ranked = []
        saturated: list[PoolState] = []
        slow = False
        slow_left = 0
        for pool in pools:
            replicas = pool.replicas
            if not pool.healthy or replicas <= 0:
                continue
            if queue_limit is not None and pool.queued >= queue_limit * replicas:
                saturated.append(pool)
                continue
            name = pool.name
            constants = cached.get(name) or latency.constants(pool)
            slots = batch_slots(size, constants.kv_capacity, constants.max_num_seqs)
            # `tandem.perf.request_cost_usd`, written out: two calls fewer per pool
            rent = pool.price_per_hour * replica_seconds_at_capacity(
                constants, prompt, output, slots) / SECONDS_PER_HOUR
            if loose:
                limits = strict_limits.get(name) or self._strict_limits_of(name, constants)
                slow = prompt > limits[0] or context > limits[1]
                slow_left += slow
            ranked.append((rent, name, slow, pool, constants, slots))
        ranked.sort()  # pool names are unique: ties on rent never compare the rest
        new = tuple.__new__
        candidates: list[Candidate] = []
        best = roomy = slower = None
        ttft_room = ttft_target * self.config.headroom
        tpot_room = tpot_target * self.config.headroom
        for cost, name, slow, pool, constants, slots in ranked:
            if not exhaustive:
                settled = slower if slower is not None else roomy if not slow_left else None
                if settled is not None and cost > settled[3]:
                    break
            # `tandem.routing.latency.join` and `LatencyModel.residual`, written out
            in_flight, queued, replicas = pool.in_flight, pool.queued, pool.replicas
            running, step_ms = pool.engine_running, pool.engine_step_ms
            if running is None:
                joining = join_pool(constants, in_flight, queued, replicas, prompt, output,
                                    pool.mean_owed_output, slots)
            else:
                kv_used = pool.kv_cache_usage
                if running > 0 and (pool.engine_waiting or (
                        kv_used is not None
                        and (1.0 - kv_used) * constants.kv_capacity < prompt)):
                    slots = running / replicas
                joining = join_pool(constants, in_flight, queued, replicas, prompt, output,
                                    pool.mean_owed_output, slots,
                                    step_ms / 1e3 if step_ms else 0.0)
            ttft, tpot = apply(name, joining, now)
            if step_ms and tpot < step_ms:  # `LatencyModel.predict`'s floor, written out
                tpot = step_ms
            table = residuals.get(name) if residuals else None
            if table is not None:
                ttft *= table[cell(in_flight + queued, replicas * constants.max_num_seqs,
                                   step_ms)]
            ttft += pool.cold_start_ms
            meets = ttft <= ttft_target and tpot <= tpot_target
            within = max_cost is None or cost <= max_cost
            candidate = new(Candidate, (name, ttft, tpot, cost, meets, within))
            candidates.append(candidate)
            slow_left -= slow
            if not (meets and within):
                continue
            # ties on rent: the earlier first token, then the name
            if best is None or cost < best[3] or (cost == best[3] and ttft < best[1]):
                best = candidate
            if ttft <= ttft_room and tpot <= tpot_room and (
                    roomy is None or cost < roomy[3] or (cost == roomy[3] and ttft < roomy[1])):
                roomy = candidate
            if slow and ttft <= ttft_room and tpot <= tpot_room and (
                    slower is None or cost < slower[3] or (
                        cost == slower[3] and ttft < slower[1])):
                slower = candidate
        return (candidates, slower or roomy or best, slower is not None,
                len(ranked) - len(candidates), saturated)

    def pick_pool(self, request: RequestFeatures, pools: Sequence[PoolState],
                  now: float) -> Decision:
        targets = self.config.latency_targets(request)
        decision = self._pick(request, pools, now, targets)
        cold = [pool for pool in pools if pool.cold_start_ms and pool.healthy]
        if not cold:
            return decision
        return _with_cold_note(decision, cold)

    def _pick(self, request: RequestFeatures, pools: Sequence[PoolState], now: float,
              targets: tuple[float, float]) -> Decision:
        config = self.config
        tier = config.targets(request.tier)
        ttft_target, tpot_target = targets
        budget = tier.budget_per_hour
        spend = self._spend.get(request.tier, 0.0)
        budget_reached = budget is not None and spend >= budget
        candidates, best, slow_rule, unpredicted, saturated = self._evaluate(
            request, pools, now, ttft_target, tpot_target, config.max_queued_per_replica,
            budget_reached)
        note = ""
        if not candidates:
            if not saturated:
                raise NoHealthyPool("no healthy pool with replicas")
            candidates, best, slow_rule, unpredicted, _ = self._evaluate(
                request, saturated, now, ttft_target, tpot_target, None, budget_reached)
            note = "all pools saturated; "
        if budget_reached:
            pool = _cheapest([c for c in candidates if c.within_cost] or candidates)
            reason = (f"{note}{request.tier} tier budget reached (${spend:.2f}/h >= "
                      f"${budget:.2f}/h): cheapest pool")
            return _decision(pool, reason, targets, candidates, not pool.meets_slo)
        if best is not None:
            reason = f"{note}cheapest meeting TTFT<={ttft_target:g}ms TPOT<={tpot_target:g}ms"
            headroom = config.headroom
            if best[1] <= ttft_target * headroom and best[2] <= tpot_target * headroom:
                reason += f" with {1 - headroom:.0%} to spare"
            if slow_rule:
                ttft_strict, tpot_strict = self._strictest
                reason += (f" among pools too slow for TTFT<={ttft_strict:g}ms "
                           f"TPOT<={tpot_strict:g}ms by their prior (the fast ones stay free "
                           "for that tier)")
            if unpredicted:
                reason += f"; {unpredicted} pool(s) renting more for it not predicted"
            return _decision(best, reason, targets, candidates, False)
        affordable = [c for c in candidates if c.within_cost]
        if not affordable:
            pool = _cheapest(candidates)
            reason = f"{note}no pool within max cost ${request.max_cost_usd:g}: cheapest"
            return _decision(pool, reason, targets, candidates, not pool.meets_slo)
        pool = min(affordable, key=lambda c: (max(c.predicted_ttft_ms / ttft_target,
                                                  c.predicted_tpot_ms / tpot_target),
                                              c.predicted_cost_usd, c.pool))
        reason = (f"{note}no pool meets TTFT<={ttft_target:g}ms TPOT<={tpot_target:g}ms: "
                  "fastest")
        return _decision(pool, reason, targets, candidates, True)

    def _strict_limits_of(self, name: str, constants: PoolConstants) -> tuple[float, float]:
        """The longest prompt and context pool `name`'s prior serves idle within the
        strictest tier's targets (`tandem.perf.idle_limits`), cached: priors do not change.

        A request beyond them is one the pool is too slow for, and a request with looser
        targets than the strictest tier's goes to the cheapest pool too slow for it that
        meets its own targets, when there is one: the pools fast enough for the strictest
        tier stay free for it. Without this, loose traffic fills the fast pools first (they
        are often the cheapest per request) and the tight tier they were bought for queues
        behind it. By the prior, idle: what a pool is for is its hardware, not its current
        load nor corrections learned under load (on the local pools, whose speeds are
        close, either flipped their roles)."""
        ttft_strict, tpot_strict = self._strictest
        limits = self._strict_limits[name] = idle_limits(constants, ttft_strict / 1e3,
                                                         tpot_strict / 1e3)
        return limits


def _with_cold_note(decision: Decision, cold: list[PoolState]) -> Decision:
    """The decision, its reason saying whether it waits for a cold pool, or spilled from one
    that would meet the decision's targets but for its start."""
    ttft_target, tpot_target = decision.ttft_target_ms, decision.tpot_target_ms
    notes = []
    for pool in cold:
        wait = f"~{pool.cold_start_ms / 1e3:.0f} s to start"
        if pool.name == decision.pool:
            notes.append(f"{pool.name} is cold: waits for its first replica ({wait})")
            continue
        candidate = next((c for c in decision.candidates if c.pool == pool.name), None)
        if candidate is not None and not candidate.meets_slo \
                and candidate.predicted_tpot_ms <= tpot_target \
                and candidate.predicted_ttft_ms - pool.cold_start_ms <= ttft_target:
            notes.append(f"spilled from cold {pool.name} ({wait} breaks TTFT<={ttft_target:g}ms)")
        else:
            notes.append(f"cold {pool.name} passed over ({wait})")
    return replace(decision, reason=f"{decision.reason}; {'; '.join(notes)}")


def _cheapest(candidates: list[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.predicted_cost_usd, c.predicted_ttft_ms, c.pool))


def _decision(chosen: Candidate, reason: str, targets: tuple[float, float],
              candidates: list[Candidate], predicted_slo_miss: bool) -> Decision:
    return Decision(pool=chosen.pool, reason=reason, ttft_target_ms=targets[0],
                    tpot_target_ms=targets[1], predicted_ttft_ms=chosen.predicted_ttft_ms,
                    predicted_tpot_ms=chosen.predicted_tpot_ms,
                    predicted_cost_usd=chosen.predicted_cost_usd,
                    predicted_slo_miss=predicted_slo_miss, candidates=tuple(candidates))

"""Per-pool latency prediction: the roofline prior, corrected by what pools deliver.

The prior (`tandem.perf`, the model the planner sizes fleets with) knows the hardware:
prefill is FLOP-bound on prompt tokens, a decode step streams the weights plus the
running batch's KV cache, and every request pays the serving path's fixed overhead. It
is right about shape and wrong about constants (engine overheads, fragmentation, a noisy
neighbour, a throttled card), so each pool learns online:

* TTFT of requests that found no queue = `overhead + service x` the predicted prefill: a
  least-squares line through recent (predicted prefill, measured TTFT) pairs, held to
  the prior (overhead as configured, slope 1) by a twentieth of an observation, so the
  fixed serving-path latency and the load-dependent part are learned apart and short
  prompts on an idle pool are not underpredicted;
* `queue`: the part of TTFT a queued request spent waiting, over the predicted wait
  (never below 1, see `_QUEUE_RATIO_FLOOR`), raised already by a request still waiting
  past its prediction (`observe_waiting`);
* `tpot`: time per output token over the predicted decode step.

Where a pool's engines report their batch (`PoolState.engine_running`, ...: under a second
old), the prediction takes what only they know (`join`): a wait for a slot runs at the
engine's measured step, which a neighbour slowing the machine lengthens
(`tandem.perf.join_pool`'s `measured_step`), and an engine holding requests waiting, or a
KV cache too full for the request's prompt, has no slot free beyond the batch it runs,
whatever `max_num_seqs` says. The requests ahead are the caller's counts, which are
current. What the formula still misses as a function of load and step time is a per-pool
table of ratios learned from the answered requests (`tandem.routing.residual`), fitted off
the request path by the caller (`residual_samples`, `set_residuals`).

Recent observations weigh most (each older one counts `1 - alpha` less for the ratios,
15 % less for the TTFT line), so a pool that slows down, or recovers, is predicted so
within 20 requests. Corrections decay back to the prior
while a pool sees no traffic, and an idle pool unobserved for a while is probed
(`unobserved_for`), so a pool that recovered gets its traffic back. Everything is plain
data: the caller passes the pool state a request was dispatched with, what it observed
and `now`; predictions are functions of that state.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from tandem.perf import (
    PoolConstants,
    ReplicaModel,
    flat_prior,
    join_pool,
    pool_constants,
)
from tandem.routing.residual import SAMPLES_KEPT, Sample, cell_of, load_of
from tandem.routing.types import PoolState, RequestFeatures

_RATIO_BOUNDS = (0.02, 100.0)  # one wild observation may not swing a pool further
_QUEUE_SHARE_FOR_QUEUE_UPDATE = 0.2  # learn the queue ratio only where waiting dominates
# A queued request is never predicted to wait less than the slot arithmetic says. Requests
# from closed-loop clients arrive just as their own predecessor frees a slot, so they
# teach the model that waits vanish; a request arriving at any other moment then waits
# the whole turn it was not predicted to (measured: an interactive request behind six
# closed-loop batch clients predicted at ~100 ms, measured at 300-600 ms).
_QUEUE_RATIO_FLOOR = 1.0
_FIT_MEMORY = 0.85  # weight of the previous TTFT observations: a change shows within ~20
_PRIOR_WEIGHT = 0.05  # pseudo-observations holding the fit to the prior


class Prediction(NamedTuple):
    """What a pool is expected to deliver for one request, corrections applied."""

    ttft_ms: float
    tpot_ms: float


@dataclass(slots=True)
class PoolCorrection:
    """What one pool has shown: the learned TTFT line and observed/predicted ratios."""

    prior_overhead: float  # seconds, from the prior
    overhead: float  # seconds, learned
    service: float = 1.0
    queue: float = 1.0
    tpot: float = 1.0
    # decayed sums of (weight, x, y, x^2, xy) over no-queue TTFT observations
    fit: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    queue_count: int = 0
    tpot_count: int = 0
    updated_at: float | None = None

    def learn_ttft(self, prefill_s: float, ttft_s: float) -> None:
        """Refit `overhead + service x prefill` with one more no-queue observation."""
        keep = _FIT_MEMORY
        w, sx, sy, sxx, sxy = self.fit
        w, sx, sy = keep * w + 1.0, keep * sx + prefill_s, keep * sy + ttft_s
        sxx, sxy = keep * sxx + prefill_s * prefill_s, keep * sxy + prefill_s * ttft_s
        self.fit = (w, sx, sy, sxx, sxy)
        mean_x = sx / w
        lam, lam_x = _PRIOR_WEIGHT, _PRIOR_WEIGHT * mean_x * mean_x
        a11, a12, a22 = w + lam, sx, sxx + lam_x
        b1, b2 = sy + lam * self.prior_overhead, sxy + lam_x
        det = a11 * a22 - a12 * a12
        low, high = _RATIO_BOUNDS
        overhead, service = (b1 * a22 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det
        if overhead < 0.0:  # no negative fixed cost: all of it is load-dependent
            overhead, service = 0.0, b2 / a22
        self.overhead = overhead
        self.service = min(max(service, low), high)


class LatencyModel:
    """Predicts TTFT/TPOT per pool from its prior and its learned corrections.

    Args:
        priors: pool name -> replica model; a pool not listed uses `default_prior`.
        alpha: EWMA weight of a new queue or TPOT observation.
        stale_half_life_s: corrections decay halfway to the prior after this long unobserved.
        default_prior: for pools without a prior (the ones a PoolState's own
            `predicted_ttft_ms`/`predicted_tpot_ms` do not describe either).
    """

    def __init__(self, priors: Mapping[str, ReplicaModel], *, alpha: float = 0.2,
                 stale_half_life_s: float | None = 600.0,
                 default_prior: ReplicaModel | None = None) -> None:
        self.priors = dict(priors)
        self.alpha = alpha
        self.stale_half_life_s = stale_half_life_s
        self.default_prior = default_prior or flat_prior(500.0, 50.0, 1.0, name="unknown")
        self.corrections: dict[str, PoolCorrection] = {}
        self.pool_constants: dict[str, PoolConstants] = {}  # filled by `constants`
        self.residuals: dict[str, tuple[float, ...]] = {}  # pool -> ratio per residual cell
        self.samples: dict[str, deque[Sample]] = {}  # pool -> what its residual is fitted to

    def prior_for(self, pool: PoolState) -> ReplicaModel:
        prior = self.priors.get(pool.name)
        if prior is None:
            if pool.predicted_ttft_ms and pool.predicted_tpot_ms:
                prior = flat_prior(pool.predicted_ttft_ms, pool.predicted_tpot_ms,
                                   pool.price_per_hour, name=pool.name)
            else:
                prior = self.default_prior
            self.priors[pool.name] = prior
        return prior

    def constants(self, pool: PoolState) -> PoolConstants:
        """The pool's prior flattened for `tandem.perf.join_pool` (cached)."""
        constants = self.pool_constants.get(pool.name)
        if constants is None:
            constants = self.pool_constants[pool.name] = pool_constants(self.prior_for(pool))
        return constants

    def corrected(self, name: str, now: float) -> tuple[float, float, float, float] | None:
        """(overhead s, service, queue, tpot ratios) of pool `name` at `now`, decayed towards
        the prior for the time it went unobserved; None while nothing was observed."""
        correction = self.corrections.get(name)
        if correction is None:
            return None
        keep = self._kept(correction, now)
        if keep == 1.0:
            return correction.overhead, correction.service, correction.queue, correction.tpot
        prior = correction.prior_overhead
        return (prior + (correction.overhead - prior) * keep,
                1.0 + (correction.service - 1.0) * keep, 1.0 + (correction.queue - 1.0) * keep,
                1.0 + (correction.tpot - 1.0) * keep)

    def _kept(self, correction: PoolCorrection, now: float) -> float:
        """The share of a correction still standing after the time it went unobserved."""
        half_life = self.stale_half_life_s
        if half_life is None or correction.updated_at is None or now <= correction.updated_at:
            return 1.0
        return 0.5 ** ((now - correction.updated_at) / half_life)

    def unobserved_for(self, name: str, now: float, seconds: float) -> bool:
        """True when pool `name` was observed once but not in the last `seconds`. A pool
        judged slow gets no traffic (it is predicted to miss) and so no observation that
        could clear it, only the slow decay would; the ingress probes such pools instead."""
        correction = self.corrections.get(name)
        return (correction is not None and correction.updated_at is not None
                and now - correction.updated_at >= seconds)

    def predict(self, pool: PoolState, request: RequestFeatures, now: float) -> Prediction:
        """Predicted TTFT and TPOT (ms) of `request` on `pool`.

        The TPOT is never below the step its engines report (`PoolState.engine_step_ms`): a
        request joining their batch gets a token no more often than the batch does now. The
        learned TPOT ratio hears of a slowdown only as requests finish, tens of seconds into
        a long decode, and the formula prices the batch mates' prefills at the request's own
        prompt, so a short one behind long ones is predicted fast."""
        constants = self.constants(pool)
        joining = join(constants, pool, request.prompt_tokens, request.max_tokens)
        ttft, tpot = self.apply(pool.name, joining, now)
        step_ms = pool.engine_step_ms
        return Prediction(ttft * self.residual(pool, constants),
                          step_ms if step_ms and step_ms > tpot else tpot)

    def residual(self, pool: PoolState, constants: PoolConstants) -> float:
        """The learned ratio of measured to formula TTFT for `pool` in its state (1: none
        learned yet)."""
        table = self.residuals.get(pool.name)
        if table is None:
            return 1.0
        return table[cell_of(pool, constants.max_num_seqs)]

    def residual_samples(self) -> dict[str, list[Sample]]:
        """Each pool's recent (load, step, log ratio) observations, copied: to fit residual
        tables from (`tandem.routing.residual.fit_table`) off the request path."""
        return {name: list(samples) for name, samples in self.samples.items()}

    def set_residuals(self, tables: Mapping[str, tuple[float, ...] | None]) -> None:
        """Use the fitted tables (None: not enough observations for that pool yet)."""
        self.residuals = {**self.residuals,
                          **{name: table for name, table in tables.items() if table}}

    def apply(self, name: str, joining: tuple[float, ...], now: float) -> tuple[float, float]:
        """TTFT and TPOT (ms) of a `tandem.perf.join_pool` result with pool `name`'s corrections (the
        router's hot path: `corrected`, written out)."""
        correction = self.corrections.get(name)
        if correction is None:
            return (joining[0] + joining[1] + joining[2]) * 1e3, joining[3] * 1e3
        updated, half_life = correction.updated_at, self.stale_half_life_s
        if updated is None or now <= updated or half_life is None:
            return ((correction.overhead + joining[1] * correction.service
                     + joining[2] * correction.queue) * 1e3, joining[3] * correction.tpot * 1e3)
        keep = 0.5 ** ((now - updated) / half_life)
        prior = correction.prior_overhead
        return ((prior + (correction.overhead - prior) * keep
                 + joining[1] * (1.0 + (correction.service - 1.0) * keep)
                 + joining[2] * (1.0 + (correction.queue - 1.0) * keep)) * 1e3,
                joining[3] * (1.0 + (correction.tpot - 1.0) * keep) * 1e3)

    def observe(self, pool: PoolState, request: RequestFeatures, now: float, *,
                ttft_ms: float | None = None, tpot_ms: float | None = None,
                e2e_ms: float | None = None) -> None:
        """Learn from one finished (or first-token) observation.

        Args:
            pool: the pool's state when the request was dispatched to it.
            request: the request as it was routed (`max_tokens`: the tokens it produced).
            now: when the observation was made (decay of stale corrections starts here).
            ttft_ms: observed time to first token, if known.
            tpot_ms: observed mean time per output token, if known.
            e2e_ms: observed end-to-end time, for a request whose first token was not seen
                (a non-streamed response): it scales TTFT and TPOT by the same ratio.
        """
        constants = self.constants(pool)
        prior_overhead, service, queue, step, _ = join(constants, pool, request.prompt_tokens,
                                                       request.max_tokens)
        correction = self._current(pool.name, prior_overhead, now)
        if ttft_ms is None and tpot_ms is None and e2e_ms is not None and e2e_ms > 0:
            first = correction.overhead + service * correction.service + queue * correction.queue
            decode = max(0, request.max_tokens - 1) * step * correction.tpot
            scale = e2e_ms / 1e3 / (first + decode)
            ttft_ms = first * scale * 1e3
            tpot_ms = step * correction.tpot * scale * 1e3 if decode > 0 else None
        low, high = _RATIO_BOUNDS
        if ttft_ms is not None and ttft_ms > 0:
            observed = ttft_ms / 1e3
            formula = correction.overhead + service * correction.service + queue * correction.queue
            samples = self.samples.get(pool.name)
            if samples is None:
                samples = self.samples[pool.name] = deque(maxlen=SAMPLES_KEPT)
            samples.append((load_of(pool, constants.max_num_seqs), pool.engine_step_ms or 0.0,
                            math.log(observed / formula) if formula > 0 else 0.0))
            if queue > 0 and queue > _QUEUE_SHARE_FOR_QUEUE_UPDATE * (service + queue):
                waited = observed - correction.overhead - correction.service * service
                sample = min(max(waited / queue, _QUEUE_RATIO_FLOOR), high)
                correction.queue_count += 1
                weight = max(self.alpha, 1.0 / correction.queue_count)
                correction.queue += weight * (sample - correction.queue)
            elif service > 0:
                correction.learn_ttft(service, observed)
        if tpot_ms is not None and tpot_ms > 0 and step > 0:
            sample = min(max(tpot_ms / 1e3 / step, low), high)
            correction.tpot_count += 1
            weight = max(self.alpha, 1.0 / correction.tpot_count)
            correction.tpot += weight * (sample - correction.tpot)
        if correction.updated_at is None or now > correction.updated_at:
            correction.updated_at = now

    def observe_waiting(self, pool: PoolState, request: RequestFeatures, now: float,
                        waited_ms: float) -> None:
        """Learn from a request that has waited `waited_ms` without its first token yet.

        Its TTFT is at least that. A queued request's first token comes 10-30 s late on a
        slow pool, so the queue ratio learned from first tokens alone lags the queue it
        should warn of by as long; this raises it as soon as a wait outgrows its
        prediction. Only the queue ratio, where waiting dominates the prediction: a bound
        says nothing of the TTFT line. Args as `observe`'s; `pool`: as dispatched.
        """
        constants = self.constants(pool)
        prior_overhead, service, queue, _, _ = join(constants, pool, request.prompt_tokens,
                                                    request.max_tokens)
        if queue <= _QUEUE_SHARE_FOR_QUEUE_UPDATE * (service + queue):
            return
        correction = self._current(pool.name, prior_overhead, now)
        waited = waited_ms / 1e3 - correction.overhead - correction.service * service
        if waited > correction.queue * queue:
            bound = min(waited / queue, _RATIO_BOUNDS[1])
            correction.queue += max(self.alpha, 1.0 / (correction.queue_count + 1)) * (
                bound - correction.queue)
            if correction.updated_at is None or now > correction.updated_at:
                correction.updated_at = now

    def _current(self, name: str, prior_overhead: float, now: float) -> PoolCorrection:
        """Pool `name`'s correction, created at its prior, decayed for the time it went
        unobserved: what went stale weighs less in the next fit too."""
        correction = self.corrections.get(name)
        if correction is None:
            correction = self.corrections[name] = PoolCorrection(prior_overhead, prior_overhead)
        keep = self._kept(correction, now)
        if keep < 1.0:
            correction.fit = tuple(moment * keep for moment in correction.fit)
            (correction.overhead, correction.service, correction.queue,
             correction.tpot) = self.corrected(name, now)
        return correction


def join(constants: PoolConstants, pool: PoolState, prompt: int, output: int,
         slots: int | None = None) -> tuple[float, ...]:
    """`tandem.perf.join_pool` for a request joining `pool`, behind the requests the caller
    counts. Where its engines reported their batch: slots free up at their measured step,
    and while they hold requests waiting, or their KV cache has no room for the prompt (by
    the prior's capacity), the batch they run is all the slots there are."""
    running = pool.engine_running
    if running is None:
        return join_pool(constants, pool.in_flight, pool.queued, pool.replicas, prompt, output,
                         pool.mean_owed_output, slots)
    kv_used, step_ms = pool.kv_cache_usage, pool.engine_step_ms
    if running > 0 and (pool.engine_waiting or (
            kv_used is not None and (1.0 - kv_used) * constants.kv_capacity < prompt)):
        slots = running / pool.replicas
    return join_pool(constants, pool.in_flight, pool.queued, pool.replicas, prompt, output,
                     pool.mean_owed_output, slots, step_ms / 1e3 if step_ms else 0.0)

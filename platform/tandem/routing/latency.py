"""Per-pool latency prediction: the planner's roofline prior, corrected by what pools deliver.

The prior (`tandem.planner.perf.ReplicaModel`, the same model the planner sizes fleets
with) knows the hardware: prefill is FLOP-bound on prompt tokens, a decode step streams
the weights plus the running batch's KV cache. It is right about shape and wrong about
constants (engine overheads, fragmentation, a noisy neighbour, a throttled card), so
each pool keeps three observed/predicted ratios, learned online:

* `service`: TTFT of requests that found no queue, over the predicted prefill time;
* `queue`: the part of TTFT a queued request spent waiting, over the predicted wait
  (queue-depth effect: a pool whose waiting line moves slower than modelled);
* `tpot`: time per output token over the predicted decode step.

Each is a running mean for the first `1/alpha` observations (so the very first
observation already counts fully) and an EWMA after, so a pool that slows down is
predicted slow within a few requests. Corrections decay back to the prior while a pool
sees no traffic, and an idle pool that has gone unobserved for a while is probed
(`unobserved_for`), so a pool that recovered gets its traffic back. Everything is plain data:
the caller passes the pool state a request was dispatched with, what it observed and
`now`; predictions are functions of that state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tandem.planner.perf import ReplicaModel
from tandem.routing.types import PoolState, RequestFeatures

_RATIO_BOUNDS = (0.02, 100.0)  # one wild observation may not swing a pool further
_QUEUE_SHARE_FOR_QUEUE_UPDATE = 0.2  # learn the queue ratio only where waiting dominates


def flat_prior(ttft_ms: float, tpot_ms: float, price_per_hour: float, *,
               name: str = "custom", reference_prompt_tokens: int = 512,
               max_num_seqs: int = 16, kv_capacity: int = 131_072,
               context_length: int = 4096) -> ReplicaModel:
    """A prior for hardware the catalog does not describe (e.g. the local CPU pools).

    Idle TTFT is `ttft_ms` for a `reference_prompt_tokens` prompt (linear in the prompt),
    decode is `tpot_ms` per step until the batch turns it compute-bound. Observations
    correct it like any other prior.
    """
    return ReplicaModel(
        gpu=name, model=name, precision="fp16", precision_note="measured prior", tp=1,
        price_per_hour=price_per_hour, kv_capacity=kv_capacity, max_num_seqs=max_num_seqs,
        context_length=context_length, overhead=0.0, mem_fixed=tpot_ms / 1e3,
        mem_per_token=0.0, flop_per_token=ttft_ms / 1e3 / reference_prompt_tokens,
        attn_per_token2=0.0)


class Prediction(NamedTuple):
    """What a pool is expected to deliver for one request, corrections applied."""

    ttft_ms: float
    tpot_ms: float
    busy_s: float  # replica time the request occupies: prefill + every decode step
    concurrency: float  # sequences sharing those steps (the batch it joins, itself included)


@dataclass(slots=True)
class PoolCorrection:
    """Learned observed/predicted ratios of one pool (1.0 = the prior is right)."""

    service: float = 1.0
    queue: float = 1.0
    tpot: float = 1.0
    service_count: int = 0
    queue_count: int = 0
    tpot_count: int = 0
    updated_at: float | None = None


class LatencyModel:
    """Predicts TTFT/TPOT per pool from its prior and its learned corrections.

    Args:
        priors: pool name -> replica model; a pool not listed uses `default_prior`.
        alpha: EWMA weight of a new observation.
        stale_half_life_s: corrections decay halfway to 1.0 after this long unobserved.
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
        self._cache: dict[str, tuple] = {}  # pool -> prior constants, flattened for speed

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

    def _constants(self, pool: PoolState) -> tuple:
        constants = self._cache.get(pool.name)
        if constants is None:
            m = self.prior_for(pool)
            constants = self._cache[pool.name] = (
                m.overhead, m.mem_fixed, m.mem_per_token, m.flop_per_token, m.attn_per_token2,
                m.kv_capacity, m.max_num_seqs)
        return constants

    def _priors(self, pool: PoolState, request: RequestFeatures) -> tuple[float, float, float, float]:
        """Roofline (service, queue wait, decode step) seconds and batch for `request` on `pool`."""
        return _roofline(self._constants(pool), pool.in_flight, pool.queued, pool.replicas,
                         request.prompt_tokens, request.max_tokens)

    def _ratios(self, name: str, now: float) -> tuple[float, float, float]:
        correction = self.corrections.get(name)
        if correction is None:
            return 1.0, 1.0, 1.0
        half_life = self.stale_half_life_s
        if half_life is None or correction.updated_at is None or now <= correction.updated_at:
            return correction.service, correction.queue, correction.tpot
        keep = 0.5 ** ((now - correction.updated_at) / half_life)
        return (1.0 + (correction.service - 1.0) * keep, 1.0 + (correction.queue - 1.0) * keep,
                1.0 + (correction.tpot - 1.0) * keep)

    def unobserved_for(self, name: str, now: float, seconds: float) -> bool:
        """True when pool `name` was observed once but not in the last `seconds`. A pool
        judged slow gets no traffic (it is predicted to miss) and so no observation that
        could clear it, only the slow decay would; the ingress probes such pools instead."""
        correction = self.corrections.get(name)
        return (correction is not None and correction.updated_at is not None
                and now - correction.updated_at >= seconds)

    def predict(self, pool: PoolState, request: RequestFeatures, now: float) -> Prediction:
        """Predicted TTFT/TPOT (ms), busy time and concurrency of `request` on `pool`."""
        return Prediction(*self.predict_many((pool,), request, now)[0])

    def predict_many(self, pools: Sequence[PoolState], request: RequestFeatures,
                     now: float) -> list[tuple[float, float, float, float]]:
        """`predict` for several pools at once as plain tuples (the router's hot path)."""
        prompt = request.prompt_tokens
        output = request.max_tokens
        decode_steps = output - 1 if output > 1 else 0
        cache = self._cache
        corrections = self.corrections
        out = []
        for pool in pools:
            constants = cache.get(pool.name) or self._constants(pool)
            service, queue, step, batch = _roofline(constants, pool.in_flight, pool.queued,
                                                    pool.replicas, prompt, output)
            if pool.name in corrections:
                service_ratio, queue_ratio, tpot_ratio = self._ratios(pool.name, now)
                service *= service_ratio
                queue *= queue_ratio
                step *= tpot_ratio
            out.append(((service + queue) * 1e3, step * 1e3, service + decode_steps * step,
                        batch))
        return out

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
        service, queue, step, _ = self._priors(pool, request)
        if ttft_ms is None and tpot_ms is None and e2e_ms is not None and e2e_ms > 0:
            service_ratio, queue_ratio, tpot_ratio = self._ratios(pool.name, now)
            first = service * service_ratio + queue * queue_ratio
            decode = max(0, request.max_tokens - 1) * step * tpot_ratio
            if first + decode <= 0:
                return
            scale = e2e_ms / 1e3 / (first + decode)
            ttft_ms = first * scale * 1e3
            tpot_ms = step * tpot_ratio * scale * 1e3 if decode > 0 else None
        correction = self.corrections.get(pool.name)
        if correction is None:
            correction = self.corrections[pool.name] = PoolCorrection()
        correction.service, correction.queue, correction.tpot = self._ratios(pool.name, now)
        low, high = _RATIO_BOUNDS
        if ttft_ms is not None and ttft_ms > 0:
            observed = ttft_ms / 1e3
            total = service + queue
            if queue > _QUEUE_SHARE_FOR_QUEUE_UPDATE * total and queue > 0:
                waited = observed - correction.service * service
                sample = min(max(waited / queue, low), high)
                correction.queue_count += 1
                weight = max(self.alpha, 1.0 / correction.queue_count)
                correction.queue += weight * (sample - correction.queue)
            elif service > 0:
                sample = min(max(observed / total, low), high)
                correction.service_count += 1
                weight = max(self.alpha, 1.0 / correction.service_count)
                correction.service += weight * (sample - correction.service)
        if tpot_ms is not None and tpot_ms > 0 and step > 0:
            sample = min(max(tpot_ms / 1e3 / step, low), high)
            correction.tpot_count += 1
            weight = max(self.alpha, 1.0 / correction.tpot_count)
            correction.tpot += weight * (sample - correction.tpot)
        if correction.updated_at is None or now > correction.updated_at:
            correction.updated_at = now


def _roofline(constants: tuple, in_flight: int, queued: int, replicas: int, prompt: int,
              output: int) -> tuple[float, float, float, float]:
    """`ReplicaModel.prefill_time`/`decode_step` for a request joining a pool's least-loaded
    replica, plus the wait for the requests queued ahead of it (and for a KV slot when the
    batch is full). The decode step also carries the prefills of the batch mates' successors:
    each running sequence is replaced once per lifetime (~`output` steps), and that prefill
    stalls every decode. Returns (prefill s, queue wait s, decode step s, batch it joins)."""
    overhead, mem_fixed, mem_per_token, flop, attn, kv_capacity, max_seqs = constants
    if replicas < 1:
        replicas = 1
    running = in_flight / replicas
    waiting = queued / replicas
    context = prompt + 0.5 * output  # the request's own size stands in for its batch mates'
    batch = running + 1.0
    memory = mem_fixed + mem_per_token * batch * context
    compute = flop * batch
    step = overhead + (memory if memory > compute else compute)
    prefill_compute = flop * (prompt + running) + attn * prompt * prompt
    prefill_memory = mem_fixed + mem_per_token * (running * context + prompt)
    service = overhead + (prefill_compute if prefill_compute > prefill_memory else prefill_memory)
    queue = waiting * service
    step += running * prefill_compute / (output if output > 32 else 32)
    size = prompt + output
    slots = kv_capacity // size if size > 0 else max_seqs
    if slots > max_seqs:
        slots = max_seqs
    excess = batch + waiting - slots
    if excess > 0:
        queue += excess / (slots if slots > 0 else 1) * output * step
    return service, queue, step, batch

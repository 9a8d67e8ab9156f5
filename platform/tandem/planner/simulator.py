"""Discrete-event simulation of GPU pools serving a trace with continuous batching.

Each replica batches at iteration level like vLLM: a request joins at the next
iteration boundary after it arrives, its prompt is prefilled in one iteration (with
the running sequences decoding alongside), and it leaves the batch after its last
token. Between events that change a batch (an arrival joining, a sequence finishing)
every iteration has the same batch, so the time of n iterations is a closed-form sum
(`ReplicaModel.decode_step` is linear in the KV tokens, which grow by the batch size
each step). The simulator therefore jumps from batch change to batch change instead of
stepping token by token, which keeps a 19k-request hour under a few seconds.

Routing goes through the same `RoutingPolicy` the live ingress uses; inside a pool the
least-loaded replica takes the request, as Ray Serve's replica choice would. A policy
that learns (one with an `observe` method, like `LatencyCostPolicy`) is told each
request's TTFT at its first token and TPOT at its finish, in simulated-time order and
never before they happen, just as the ingress would tell it. Both are what the client
sees: each replica's `request_overhead` (the serving path) is added to them. At each
arrival such a policy also hears how long each pool's oldest request still waiting for its
first token has waited (`observe_waiting`, where it has one), and every pool state carries
its engines' step time lately (`PoolState.engine_step_ms`), as vLLM's reports give the
ingress: a slow pool shows in both seconds before its first tokens and finishes do.

The replica models are a catalog's prior, and a real fleet never matches its catalog. A
`Pace` makes the simulated truth depart from them (per-pool efficiency, per-request
service noise, slowdown episodes) while a policy keeps whatever prior it was built with,
so a bench can ask how well a router learns the fleet it actually has.

The fleet's cost is its rent over the trace (`tandem.perf.rent_usd`), whoever it served.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tandem.perf import (
    MAX_PREFILL_TOKENS,
    ReplicaModel,
    batch_slots,
    fleet_rent_per_hour,
    rent_usd,
)
from tandem.planner.trace import Trace
from tandem.routing.policy import LeastLoadedPolicy, RoutingPolicy
from tandem.routing.types import PoolState, RequestFeatures

# What a simulated engine reports as its step time: the mean gap between its running
# sequences' tokens, recent ones weighing most (`STEP_MEMORY_S`), none once it decoded
# nothing for the engines' window (`tandem.serve.engine_load`: 8 reports a quarter second
# apart)
STEP_MEMORY_S = 1.0
STEP_WINDOW_S = 2.0


@dataclass(frozen=True)
class Slo:
    """Latency targets a request must meet, and the share of requests that must meet them."""

    ttft_ms: float
    tpot_ms: float
    attainment: float = 0.99


@dataclass(frozen=True)
class Slowdown:
    """Pool `pool` at `speed` times its usual pace for the iterations starting in
    [`start_s`, `end_s`)."""

    pool: str
    start_s: float
    end_s: float
    speed: float = 0.5


@dataclass(frozen=True)
class Pace:
    """How the simulated fleet's truth departs from the replica models it is given.

    An iteration takes its modelled time divided by its pool's speed (`efficiency`, times
    the `slowdowns` in force when the iteration starts) and multiplied by the service noise
    of the requests it works on: the mean of their draws in `noise` over the requests a
    prefill admits, or over the batch a decode step carries. Batch mates share every step,
    so a lone request sees its own draw in full and a full batch nearly none. The serving
    path's `request_overhead` is no GPU time and is not scaled.

    `contention` is a pool's speed while another pool has work when its iteration (or run of
    decode iterations) starts: pools that share hardware, like the local CPU pools on one
    machine's cores, slow each other down. 1: pools are independent, as GPUs are.
    """

    efficiency: Mapping[str, float] = field(default_factory=dict)  # pool -> speed; 1: as modelled
    noise: Sequence[float] | None = None  # per request, in trace order; None: no noise
    slowdowns: Sequence[Slowdown] = ()
    contention: float = 1.0

    def speed(self, pool: str, at_s: float) -> float:
        """Pool `pool`'s speed relative to its model for an iteration starting at `at_s`."""
        speed = self.efficiency.get(pool, 1.0)
        for slowdown in self.slowdowns:
            if slowdown.pool == pool and slowdown.start_s <= at_s < slowdown.end_s:
                speed *= slowdown.speed
        return speed


def paced(model: ReplicaModel, speed: float) -> ReplicaModel:
    """`model` at `speed` times its pace: what a noiseless `Pace` of that speed makes the
    simulator run, as a model a policy can be given (every iteration time over `speed`)."""
    return replace(model, overhead=model.overhead / speed, mem_fixed=model.mem_fixed / speed,
                   mem_per_token=model.mem_per_token / speed,
                   flop_per_token=model.flop_per_token / speed,
                   attn_per_token2=model.attn_per_token2 / speed)


@dataclass(frozen=True)
class PoolReport:
    name: str
    gpu: str
    replicas: int
    tp: int
    cost_per_hour: float
    requests: int
    utilization: float  # busy share of replica time over the run


@dataclass(frozen=True)
class SimulationResult:
    """Per-request timings plus the summary a plan reports."""

    served: int
    rejected: int  # longer than the model's context or any replica's KV cache
    slo_attainment: float
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    pools: list[PoolReport]
    cost_per_hour: float
    cost_per_1k_requests: float
    cost_per_1m_output_tokens: float
    duration_s: float
    first_token_s: np.ndarray = field(repr=False)
    finish_s: np.ndarray = field(repr=False)
    pool_of_request: np.ndarray = field(repr=False)


class _Replica:
    __slots__ = ("model", "pool", "index", "clock", "steps", "running", "kv", "reserved",
                 "waiting", "version", "event_time", "busy", "slowness", "noise_sum",
                 "gap_sum", "gap_tokens", "gap_at")

    def __init__(self, model: ReplicaModel, pool: int, index: int) -> None:
        self.model = model
        self.pool = pool
        self.index = index
        self.clock = 0.0  # the time up to which this replica's work is committed
        self.steps = 0  # iterations completed
        self.running: list[tuple[int, int]] = []  # heap of (end step, request)
        self.kv = 0.0  # KV tokens held by the running batch
        self.reserved = 0  # prompt + output tokens promised to running sequences
        self.waiting: deque[int] = deque()
        self.version = 0
        self.event_time = math.inf
        self.busy = 0.0
        self.slowness = 1.0  # true over modelled time of the current decode segment (`Pace`)
        self.noise_sum = 0.0  # the running batch's service noise draws, summed
        # decayed sums of the gaps before running sequences' tokens and of their count, as
        # of `gap_at`: the engine's step time lately (`engine_step_ms`)
        self.gap_sum = 0.0
        self.gap_tokens = 0.0
        self.gap_at = -math.inf

    def record_gaps(self, seconds: float, tokens: int, end: float) -> None:
        """`tokens` tokens of running sequences each took `seconds` since their previous one,
        the last at `end`; older gaps weigh less, as the engines' recent windows do."""
        if tokens <= 0:
            return
        keep = math.exp(-(end - self.gap_at) / STEP_MEMORY_S) if end > self.gap_at else 1.0
        self.gap_sum = self.gap_sum * keep + seconds * tokens
        self.gap_tokens = self.gap_tokens * keep + tokens
        self.gap_at = max(self.gap_at, end)

    def step_ms(self, now: float) -> float | None:
        """The mean gap between running sequences' tokens lately, ms; None when none decoded
        in the engines' window before `now` (`tandem.serve.engine_load`)."""
        if now - self.gap_at > STEP_WINDOW_S or not self.gap_tokens:
            return None
        return self.gap_sum / self.gap_tokens * 1e3

    def segment_time(self, n: int) -> float:
        """Seconds for n decode iterations of the current batch."""
        return self.model.decode_segment_time(n, len(self.running), self.kv) * self.slowness

    def steps_to_reach(self, elapsed: float, limit: int) -> int:
        """Fewest iterations (at most `limit`) whose total time reaches `elapsed`."""
        low, high = 0, limit
        while low < high:
            middle = (low + high) // 2
            if self.segment_time(middle) >= elapsed:
                high = middle
            else:
                low = middle + 1
        return low


def percentiles(values: np.ndarray) -> dict[str, float]:
    """p50, p90 and p99 of `values` (zeros when there are none)."""
    if values.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def simulate(trace: Trace, pools: Mapping[str, tuple[ReplicaModel, int]], slo: Slo,
             policy: RoutingPolicy | None = None,
             progress: Callable[[float], None] | None = None,
             requests: Sequence[RequestFeatures] | None = None,
             pace: Pace | None = None) -> SimulationResult:
    """Replay `trace` against `pools` (name -> (replica model, replica count)).

    Args:
        trace: arrivals and sizes.
        pools: the fleet; pools with zero replicas are ignored.
        slo: targets used for attainment.
        policy: chooses a pool per request; least-loaded when omitted.
        progress: called with the fraction of arrivals processed, now and then.
        requests: what the policy sees of each request (tier, targets); by default the
            trace's sizes with `slo`'s targets. Attainment is still judged against `slo`.
        pace: how the fleet really runs against `pools`' models; exactly as modelled when
            omitted.
    """
    names = [name for name, (_, count) in pools.items() if count > 0]
    if not names:
        raise ValueError("a simulation needs at least one replica")
    policy = policy or LeastLoadedPolicy()
    models = [pools[name][0] for name in names]
    replicas = [[_Replica(models[p], p, i) for i in range(pools[name][1])]
                for p, name in enumerate(names)]
    loads = [[0] * len(group) for group in replicas]  # running + waiting, per replica
    in_flight = [0] * len(names)
    owed = [0] * len(names)  # output tokens of the requests dispatched and not finished
    queued = [0] * len(names)
    pool_index = {name: p for p, name in enumerate(names)}

    arrival = trace.arrival_s
    prompts = trace.prompt_tokens.tolist()
    outputs = trace.output_tokens.tolist()
    count = len(trace)
    first = np.full(count, np.nan)
    finish = np.full(count, np.nan)
    served_by = np.full(count, -1, dtype=np.int64)
    noise = None if pace is None or pace.noise is None else [float(x) for x in pace.noise]
    if noise is not None and len(noise) != count:
        raise ValueError(f"pace has {len(noise)} noise draws for {count} requests")
    heap: list[tuple[float, int, int, int, int, int]] = []
    tick = 0
    observe = getattr(policy, "observe", None)
    observations: list[tuple[float, int, int]] = []  # (when, 0 first token | 1 finish, request)
    dispatched: dict[int, tuple[PoolState, RequestFeatures]] = {}
    observe_waiting = getattr(policy, "observe_waiting", None)
    unanswered: list[deque[int]] = [deque() for _ in names]  # per pool, in dispatch order

    def schedule(replica: _Replica, when: float, steps: int) -> None:
        nonlocal tick
        replica.version += 1
        replica.event_time = when
        tick += 1
        heapq.heappush(heap, (when, tick, replica.pool, replica.index, replica.version, steps))

    def can_admit(replica: _Replica, request: int, admitting: int = 0) -> bool:
        """Room for `request` beside the running batch and the `admitting` joining it:
        `tandem.perf.batch_slots` for a batch of mixed sizes (a sequence under
        `max_num_seqs`, its prompt + output within what the others left of the KV cache)."""
        m = replica.model
        return (len(replica.running) + admitting < m.max_num_seqs
                and replica.reserved + prompts[request] + outputs[request] <= m.kv_capacity)

    def finish_done(replica: _Replica) -> None:
        running = replica.running
        while running and running[0][0] <= replica.steps:
            _, request = heapq.heappop(running)
            finish[request] = replica.clock + replica.model.request_overhead
            if observe is not None:
                heapq.heappush(observations, (finish[request], 1, request))
            if noise is not None:
                replica.noise_sum = replica.noise_sum - noise[request] if running else 0.0
            size = prompts[request] + outputs[request]
            replica.kv -= size
            replica.reserved -= size
            loads[replica.pool][replica.index] -= 1
            in_flight[replica.pool] -= 1
            owed[replica.pool] -= outputs[request]

    def speed(replica: _Replica) -> float:
        """`pace`'s speed for `replica`'s iteration starting now, contention included."""
        value = pace.speed(names[replica.pool], replica.clock)
        if pace.contention != 1.0 and any(
                other.event_time != math.inf for p, group in enumerate(replicas)
                if p != replica.pool for other in group):
            value *= pace.contention
        return value

    def plan_next(replica: _Replica) -> None:
        if replica.waiting and can_admit(replica, replica.waiting[0]):
            schedule(replica, replica.clock, 0)
        elif replica.running:
            if pace is not None:
                noise_mean = replica.noise_sum / len(replica.running) if noise is not None else 1.0
                replica.slowness = noise_mean / speed(replica)
            steps = replica.running[0][0] - replica.steps
            schedule(replica, replica.clock + replica.segment_time(steps), steps)
        else:
            replica.version += 1
            replica.event_time = math.inf

    def on_event(replica: _Replica, when: float, steps: int) -> None:
        if steps:
            replica.record_gaps((when - replica.clock) / steps, len(replica.running) * steps,
                                when)
            replica.busy += when - replica.clock
            replica.kv += len(replica.running) * steps
            replica.steps += steps
        replica.clock = max(replica.clock, when)
        finish_done(replica)
        waiting = replica.waiting
        if waiting and can_admit(replica, waiting[0]):
            admitted, tokens, squares = [], 0, 0.0
            while waiting and can_admit(replica, waiting[0], len(admitted)) and (
                    not admitted or tokens + prompts[waiting[0]] <= MAX_PREFILL_TOKENS):
                request = waiting.popleft()
                admitted.append(request)
                tokens += prompts[request]
                squares += prompts[request] ** 2
                replica.reserved += prompts[request] + outputs[request]
            batch = len(replica.running)
            duration = replica.model.prefill_time(tokens, batch, replica.kv, squares)
            if pace is not None:
                noise_mean = (sum(noise[r] for r in admitted) / len(admitted)
                              if noise is not None else 1.0)
                duration *= noise_mean / speed(replica)
            replica.busy += duration
            replica.clock += duration
            replica.record_gaps(duration, batch, replica.clock)
            replica.steps += 1
            replica.kv += batch
            pool = replica.pool
            queued[pool] -= len(admitted)
            in_flight[pool] += len(admitted)
            for request in admitted:
                first[request] = replica.clock + replica.model.request_overhead
                if observe is not None:
                    heapq.heappush(observations, (first[request], 0, request))
                replica.kv += prompts[request] + 1
                if noise is not None:
                    replica.noise_sum += noise[request]
                heapq.heappush(replica.running, (replica.steps + outputs[request] - 1, request))
            finish_done(replica)
        plan_next(replica)

    def enqueue(replica: _Replica, request: int, now: float) -> None:
        replica.waiting.append(request)
        loads[replica.pool][replica.index] += 1
        queued[replica.pool] += 1
        owed[replica.pool] += outputs[request]
        served_by[request] = replica.pool
        if len(replica.waiting) > 1 or not can_admit(replica, request):
            return  # an event is already due, or a finish must free room first
        if not replica.running and replica.event_time == math.inf:
            replica.clock = max(replica.clock, now)
            schedule(replica, replica.clock, 0)
        elif replica.clock >= now:
            if replica.event_time > replica.clock:
                schedule(replica, replica.clock, 0)
        else:
            limit = replica.running[0][0] - replica.steps
            steps = replica.steps_to_reach(now - replica.clock, limit)
            boundary = replica.clock + replica.segment_time(steps)
            if boundary < replica.event_time:
                schedule(replica, boundary, steps)

    def drain(until: float) -> None:
        while heap and heap[0][0] <= until:
            when, _, pool, index, version, steps = heapq.heappop(heap)
            replica = replicas[pool][index]
            if version == replica.version:
                on_event(replica, when, steps)

    def report(until: float) -> None:
        while observations and observations[0][0] <= until:
            when, kind, request = heapq.heappop(observations)
            state, features = dispatched[request]
            if kind == 0:
                observe(state, features, when, ttft_ms=(when - arrival[request]) * 1e3)
            else:
                del dispatched[request]
                if outputs[request] > 1:
                    observe(state, features, when, tpot_ms=(when - first[request]) * 1e3
                            / (outputs[request] - 1))

    def report_waiting(now: float) -> None:
        """Each pool's oldest request still waiting for its first token, and how long."""
        for waiting in unanswered:
            while waiting and first[waiting[0]] <= now:
                waiting.popleft()
            if waiting:
                state, features = dispatched[waiting[0]]
                observe_waiting(state, features, now, (now - arrival[waiting[0]]) * 1e3)

    rejected = 0
    report_every = max(1, count // 20)
    for request in range(count):
        now = float(arrival[request])
        drain(now)
        if observe is not None:
            report(now)
        if observe_waiting is not None:
            report_waiting(now)
        if progress and request % report_every == 0:
            progress(request / count)
        size = prompts[request] + outputs[request]
        states = [PoolState(name=name, gpu=m.gpu, healthy=True,
                            replicas=len(replicas[p]), in_flight=in_flight[p],
                            queued=queued[p], price_per_hour=m.price_per_hour,
                            owed_output_tokens=owed[p],
                            engine_step_ms=_mean_step_ms(replicas[p], now))
                  for p, (name, m) in enumerate(zip(names, models))
                  if size <= m.context_length
                  and batch_slots(size, m.kv_capacity, m.max_num_seqs) > 0]
        if not states:
            rejected += 1
            continue
        if requests is None:
            features = RequestFeatures(prompt_tokens=prompts[request],
                                       max_tokens=outputs[request],
                                       requested_ttft_ms=slo.ttft_ms,
                                       requested_tpot_ms=slo.tpot_ms)
        else:
            features = requests[request]
        decision = policy.pick_pool(features, states, now)
        pool = pool_index[decision.pool]
        if observe is not None:
            dispatched[request] = (next(s for s in states if s.name == decision.pool), features)
            unanswered[pool].append(request)
        pool_loads = loads[pool]
        index = min(range(len(pool_loads)), key=pool_loads.__getitem__)
        enqueue(replicas[pool][index], request, now)
    drain(math.inf)
    if progress:
        progress(1.0)
    return _summarise(trace, names, models, replicas, slo, first, finish, served_by, rejected)


def _mean_step_ms(group: list[_Replica], now: float) -> float | None:
    """A pool's step time as the ingress merges its engines' reports: the mean over the
    replicas that decoded lately (`tandem.serve.engine_load.merge_loads`); None if none."""
    steps = [step for step in (replica.step_ms(now) for replica in group) if step is not None]
    return sum(steps) / len(steps) if steps else None


def attainment_by_tier(trace: Trace, result: SimulationResult, tiers: Sequence[str],
                       targets: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per tier, the share of its requests whose simulated TTFT and TPOT met the tier's
    (TTFT, TPOT) ms `targets`; `tiers` gives each request's tier. A rejected request is a
    miss; a one-token answer has no TPOT. NaN for a tier with no request."""
    served = result.pool_of_request >= 0
    outputs = trace.output_tokens
    ttft = (result.first_token_s - trace.arrival_s) * 1e3
    tpot = (result.finish_s - result.first_token_s) / np.maximum(outputs - 1, 1) * 1e3
    tiers = np.asarray(tiers)
    out = {}
    for tier, (ttft_ms, tpot_ms) in targets.items():
        mine = tiers == tier
        meets = served & (ttft <= ttft_ms) & ((tpot <= tpot_ms) | (outputs <= 1))
        out[tier] = float(meets[mine].mean()) if mine.any() else math.nan
    return out


def _summarise(trace: Trace, names: list[str], models: list[ReplicaModel],
               replicas: list[list[_Replica]], slo: Slo, first: np.ndarray,
               finish: np.ndarray, served_by: np.ndarray, rejected: int) -> SimulationResult:
    served = served_by >= 0
    outputs = trace.output_tokens
    ttft = (first - trace.arrival_s)[served] * 1e3
    decode_tokens = np.maximum(outputs - 1, 1)
    tpot_all = (finish - first) / decode_tokens * 1e3
    tpot = tpot_all[served & (outputs > 1)]
    meets = (ttft <= slo.ttft_ms) & ((tpot_all[served] <= slo.tpot_ms) | (outputs[served] <= 1))
    served_count = int(served.sum())
    span = float(np.nanmax(finish)) if served_count else trace.duration_s
    cost_per_hour = fleet_rent_per_hour((m.price_per_hour, len(group))
                                        for m, group in zip(models, replicas))
    cost = rent_usd(cost_per_hour, trace.duration_s)
    reports = [
        PoolReport(name=name, gpu=m.gpu, replicas=len(group), tp=m.tp,
                   cost_per_hour=m.price_per_hour * len(group),
                   requests=int((served_by == p).sum()),
                   utilization=sum(r.busy for r in group) / (len(group) * max(span, 1e-9)))
        for p, (name, m, group) in enumerate(zip(names, models, replicas))]
    output_tokens = float(outputs[served].sum())
    return SimulationResult(
        served=served_count, rejected=rejected,
        slo_attainment=float(meets.mean()) if served_count else 0.0,
        ttft_ms=percentiles(ttft), tpot_ms=percentiles(tpot), pools=reports,
        cost_per_hour=cost_per_hour,
        cost_per_1k_requests=cost / served_count * 1e3 if served_count else math.inf,
        cost_per_1m_output_tokens=cost / output_tokens * 1e6 if output_tokens else math.inf,
        duration_s=span, first_token_s=first, finish_s=finish, pool_of_request=served_by)

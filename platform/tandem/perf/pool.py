"""One request joining a loaded pool: the roofline applied to what the router can see.

The router knows a pool's requests in flight and queued and its replica count, not each
replica's batch, so a request is assumed to join the least-loaded replica of an even
spread. What the request costs there (`replica_seconds_at_capacity`, priced in
`tandem.perf.cost`) does not depend on the load. The router ranks pools by that cost and
predicts them in that order, so `pool_constants` flattens a `ReplicaModel` once per pool
and each is one call per pool (`tests/bench/test_routing_decision_time.py`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tandem.perf.roofline import ReplicaModel, batch_slots

SECONDS_PER_HOUR = 3600.0


class PoolConstants(NamedTuple):
    request_overhead: float
    step_overhead: float
    mem_fixed: float
    mem_per_token: float
    flop_per_token: float
    attn_per_token2: float
    kv_capacity: int
    max_num_seqs: int


# What `join_pool` returns, in this order (a plain tuple: it is built per pool per request):
JOINING = ("overhead",  # s, the serving path's fixed share (no GPU time)
           "service",  # s, its prefill iteration
           "queue",  # s, waiting for the requests ahead of it, and for a KV slot
           "step",  # s, each decode step after the first token
           "batch")  # sequences sharing those steps, itself included


def pool_constants(model: ReplicaModel) -> PoolConstants:
    return PoolConstants(model.request_overhead, model.overhead, model.mem_fixed,
                         model.mem_per_token, model.flop_per_token, model.attn_per_token2,
                         model.kv_capacity, model.max_num_seqs)


def join_pool(constants: PoolConstants, in_flight: int, queued: int, replicas: int, prompt: int,
              output: int, mate_output: float = 0.0, slots: int | None = None,
              measured_step: float = 0.0) -> tuple[float, ...]:
    """`ReplicaModel.prefill_time`/`decode_step` for a request joining a pool's least-loaded
    replica, plus the wait for the requests queued ahead of it (and for a KV slot when the
    batch is full). The decode step also carries the prefills of the batch mates' successors:
    each running sequence is replaced once per lifetime (~`mate_output` steps), and that
    prefill stalls every decode. `mate_output` is the mean output of the requests already
    there (0: unknown, the request's own stands in): a short request behind long ones
    waits for theirs. `slots`: the request's `batch_slots` on the pool, where the caller
    has them already (the router's hot path). `measured_step`: the engine's own decode step
    now (s; 0: not measured), which a wait for a slot then counts in instead of the
    roofline's, since a slowed engine (a busy neighbour on shared cores) frees its slots
    later by as much. Returns the `JOINING` figures. What the
    request costs does not depend on the load, so it is not here:
    `replica_seconds_at_capacity`."""
    (request_overhead, overhead, mem_fixed, mem_per_token, flop, attn, kv_capacity,
     max_seqs) = constants
    if replicas < 1:
        replicas = 1
    running = in_flight / replicas
    waiting = queued / replicas
    if mate_output <= 0.0:
        mate_output = output
    context = prompt + 0.5 * output  # its own prompt stands in for its batch mates'
    batch = running + 1.0
    memory = mem_fixed + mem_per_token * batch * context
    compute = flop * batch
    step = overhead + (memory if memory > compute else compute)
    own_compute = flop * prompt + attn * prompt * prompt
    prefill_compute = own_compute + flop * running
    prefill_memory = mem_fixed + mem_per_token * (running * context + prompt)
    service = overhead + (prefill_compute if prefill_compute > prefill_memory else prefill_memory)
    queue = waiting * service
    step += running * prefill_compute / (mate_output if mate_output > 32 else 32)
    if slots is None:
        slots = batch_slots(prompt + output, kv_capacity, max_seqs)
    excess = batch + waiting - slots
    if excess > 0:
        queue += excess / (slots if slots > 0 else 1) * mate_output * (
            measured_step if measured_step > 0.0 else step)
    return request_overhead, service, queue, step, batch


def replica_seconds_at_capacity(constants: PoolConstants, prompt: int, output: int,
                                slots: int | None = None) -> float:
    """Replica time a request takes on a full replica: its prefill's compute, and each
    decode step shared by as many sequences of its size as the replica holds. Its rent is
    the request's cost (`tandem.perf.cost`): it does not depend on the load, so a busy
    expensive pool does not look cheap, and the router ranks pools by it before it predicts
    their latency. `slots`: as `join_pool`'s."""
    (_, overhead, mem_fixed, mem_per_token, flop, attn, kv_capacity, max_seqs) = constants
    if slots is None:
        slots = batch_slots(prompt + output, kv_capacity, max_seqs)
    if slots < 1:
        slots = 1
    context = prompt + 0.5 * output
    full_memory = mem_fixed + mem_per_token * slots * context
    full_compute = flop * slots
    full_step = overhead + (full_memory if full_memory > full_compute else full_compute)
    return flop * prompt + attn * prompt * prompt + (
        output - 1 if output > 1 else 0) * full_step / slots


def idle_limits(constants: PoolConstants, ttft_s: float, tpot_s: float) -> tuple[float, float]:
    """What an idle replica serves within a TTFT and a TPOT, by `join_pool`'s formulas: the
    longest prompt whose first token comes within `ttft_s` (overhead included), and the
    longest context (prompt + half the output) it decodes within `tpot_s` per token.
    Negative: nothing fits. Both are thresholds because idle latency only grows with size,
    so a router can classify a pool for any request with two comparisons."""
    (request_overhead, overhead, mem_fixed, mem_per_token, flop, attn, _, _) = constants
    budget = ttft_s - request_overhead - overhead
    if budget < 0 or mem_fixed > budget:
        max_prompt = -1.0
    else:
        # flop * p + attn * p^2 <= budget, and mem_fixed + mem_per_token * p <= budget
        if attn > 0:
            compute = (-flop + (flop * flop + 4 * attn * budget) ** 0.5) / (2 * attn)
        else:
            compute = budget / flop if flop > 0 else math.inf
        memory = (budget - mem_fixed) / mem_per_token if mem_per_token > 0 else math.inf
        max_prompt = min(compute, memory)
    budget = tpot_s - overhead
    if budget < 0 or flop > budget or mem_fixed > budget:
        max_context = -1.0
    else:
        max_context = (budget - mem_fixed) / mem_per_token if mem_per_token > 0 else math.inf
    return max_prompt, max_context

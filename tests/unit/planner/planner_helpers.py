"""Small hand-computable fixtures shared by the planner tests."""

import numpy as np
from tandem.perf import ReplicaModel
from tandem.planner.trace import Trace


def make_trace(arrivals, prompts, outputs):
    return Trace(np.asarray(arrivals, float), np.asarray(prompts, np.int64),
                 np.asarray(outputs, np.int64))


def fixed_step_replica(step_s=0.01, kv_capacity=100_000, context=4096, price=1.0,
                       gpu="FAKE", max_num_seqs=256):
    """A replica whose every iteration (prefill or decode) takes exactly `step_s`."""
    return ReplicaModel(gpu=gpu, model="toy", precision="fp16", precision_note="", tp=1,
                        price_per_hour=price, kv_capacity=kv_capacity, max_num_seqs=max_num_seqs,
                        context_length=context, overhead=0.0, mem_fixed=step_s,
                        mem_per_token=0.0, flop_per_token=0.0, attn_per_token2=0.0)


def queue_trace(count=20):
    """`count` requests 0.1 s apart, each holding a one-sequence `queue_replica` for 1.1 s
    (a prefill and ten decode steps): request i waits i seconds on one replica, so the
    queue grows through the trace while every TPOT is 100 ms."""
    return make_trace(np.arange(count) * 0.1, [10] * count, [11] * count)


def queue_replica(gpu="slow", max_num_seqs=1):
    return fixed_step_replica(0.1, gpu=gpu, max_num_seqs=max_num_seqs)

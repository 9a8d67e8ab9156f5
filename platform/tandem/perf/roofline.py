"""Roofline latency model of one serving replica (a GPU type, a model, a precision, a TP degree).

Serving is two different workloads. Prefill pushes every prompt token through every
weight at once, so it is bound by FLOPs. Decode produces one token per running sequence
per iteration and must stream all weights plus the batch's whole KV cache from memory
each time, so it is bound by bandwidth until the batch is large enough to turn it
compute-bound. Both are written as `fixed + slope x load` so decode iterations sum in
closed form (`decode_segment_time`, the simulator's inner loop), and both take efficiency
factors that measurements refine (`tandem.planner.fit`). Around the engine, every request
also pays the serving path's own latency (HTTP proxy, ingress, engine admission): a
fixed `request_overhead` that is part of its TTFT but occupies no GPU time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tandem.catalog import (
    Catalog,
    GpuSpec,
    ModelProfile,
    choose_tensor_parallel,
    kv_capacity_tokens,
    resolve_precision,
)
from tandem.errors import UserError

MAX_NUM_SEQS = 256  # vLLM's default cap on sequences in one batch: a catalog replica's
POOL_MAX_NUM_SEQS = 16  # a pool's cap when its Serve config sets none (`EngineSettings`)
MAX_PREFILL_TOKENS = 8192  # prompt tokens admitted per iteration (chunked-prefill budget)


@dataclass(frozen=True)
class ReplicaModel:
    """Latency of one replica; times in seconds.

    Decode iteration with batch B holding K cached tokens:
        step(B, K) = overhead + max(mem_fixed + mem_per_token * K, flop_per_token * B)
    Prefill of P prompt tokens (riding along with a decode of the running batch):
        overhead + max(memory part, flop_per_token * (P + B) + attn_per_token2 * sum(L^2))
    A request's TTFT adds `request_overhead`, the serving path's fixed share.
    """

    gpu: str
    model: str
    precision: str
    precision_note: str
    tp: int
    price_per_hour: float  # the whole replica: tp GPUs
    kv_capacity: int  # tokens
    max_num_seqs: int
    context_length: int
    overhead: float
    mem_fixed: float
    mem_per_token: float
    flop_per_token: float
    attn_per_token2: float
    request_overhead: float = 0.0

    def decode_step(self, batch: int, kv_tokens: float) -> float:
        return self.overhead + max(self.mem_fixed + self.mem_per_token * kv_tokens,
                                   self.flop_per_token * batch)

    def prefill_time(self, prompt_tokens: int, batch: int = 0, kv_tokens: float = 0.0,
                     square_sum: float | None = None) -> float:
        """One iteration that prefills `prompt_tokens` while `batch` sequences decode."""
        squares = prompt_tokens * prompt_tokens if square_sum is None else square_sum
        compute = self.flop_per_token * (prompt_tokens + batch) + self.attn_per_token2 * squares
        memory = self.mem_fixed + self.mem_per_token * (kv_tokens + prompt_tokens)
        return self.overhead + max(compute, memory)

    def decode_segment_time(self, steps: int, batch: int, kv_tokens: float) -> float:
        """Seconds for `steps` decode iterations of a fixed `batch` whose KV cache starts at
        `kv_tokens` and grows by `batch` per step: the sum of `decode_step`, in closed form."""
        if steps <= 0:
            return 0.0
        base = self.mem_fixed + self.mem_per_token * kv_tokens
        slope = self.mem_per_token * batch
        compute = self.flop_per_token * batch
        if compute <= base:
            bound = 0
        elif slope > 0:
            bound = min(steps, math.ceil((compute - base) / slope))
        else:
            bound = steps
        memory = (steps - bound) * base + slope * (steps * (steps - 1) - bound * (bound - 1)) / 2
        return steps * self.overhead + bound * compute + memory

    def decode_tokens_per_s(self, batch: int, context_tokens: float) -> float:
        """Generated tokens per second with `batch` sequences of `context_tokens` each."""
        return batch / self.decode_step(batch, batch * context_tokens)

    def max_concurrent_seqs(self, tokens_per_seq: float) -> int:
        """This replica's `batch_slots` for sequences of `tokens_per_seq` tokens."""
        return batch_slots(tokens_per_seq, self.kv_capacity, self.max_num_seqs)


def batch_slots(tokens_per_seq: float, kv_capacity: float, max_num_seqs: int) -> int:
    """Sequences of `tokens_per_seq` tokens each (prompt + output, reserved whole) one
    replica batches at once: as many as its KV cache of `kv_capacity` tokens holds, at most
    `max_num_seqs`. 0 when one sequence is larger than the cache (a caller that divides by
    the slots counts at least 1); `max_num_seqs` when the size is not known (<= 0)."""
    if tokens_per_seq <= 0:
        return max_num_seqs
    slots = kv_capacity // tokens_per_seq
    return max_num_seqs if slots >= max_num_seqs else int(slots) if slots > 0 else 0


def build_replica_model(catalog: Catalog, gpu: GpuSpec | str, model: ModelProfile,
                        precision: str, tp: int | None = None, *,
                        request_overhead_ms: float = 0.0) -> ReplicaModel:
    """The latency model of one replica; picks the smallest fitting TP degree unless given.
    `request_overhead_ms` is the serving path's fixed share of each TTFT (0: the engine's
    own latency, as a datasheet describes it)."""
    spec = catalog.gpu(gpu) if isinstance(gpu, str) else gpu
    choice = resolve_precision(spec, precision)
    effective = choice.effective
    if tp is None:
        tp = choose_tensor_parallel(spec, model, effective)
        if tp is None:
            raise UserError(f"{model.name} in {effective} does not fit 8 x {spec.name}")
    efficiency = catalog.efficiency(spec)
    scale = spec.tp_efficiency if tp > 1 else 1.0
    bandwidth = spec.memory_bandwidth_tbps * 1e12 * efficiency.bandwidth * tp * scale
    flops = spec.tflops[effective] * 1e12 * efficiency.compute * tp * scale
    # causal self-attention: QK^T and AV, 2 FLOPs per MAC, half the square is masked
    attn_flops_per_token2 = 2 * model.layers * model.attention_heads * model.head_dim
    return ReplicaModel(
        gpu=spec.name, model=model.name, precision=effective, precision_note=choice.note,
        tp=tp, price_per_hour=spec.price_per_hour * tp,
        kv_capacity=kv_capacity_tokens(spec, model, effective, tp), max_num_seqs=MAX_NUM_SEQS,
        context_length=model.context_length, overhead=efficiency.step_overhead_ms / 1e3,
        mem_fixed=model.weight_bytes(effective) / bandwidth,
        mem_per_token=model.kv_bytes_per_token(effective) / bandwidth,
        flop_per_token=2 * model.params_b * 1e9 / flops,
        attn_per_token2=attn_flops_per_token2 / flops,
        request_overhead=request_overhead_ms / 1e3)


def flat_prior(ttft_ms: float, tpot_ms: float, price_per_hour: float, *,
               name: str = "custom", reference_prompt_tokens: int = 512,
               max_num_seqs: int = POOL_MAX_NUM_SEQS, kv_capacity: int = 131_072,
               context_length: int = 4096, overhead_ms: float = 0.0) -> ReplicaModel:
    """A model of hardware the catalog does not describe (e.g. the local CPU pools).

    Idle TTFT is `ttft_ms` for a `reference_prompt_tokens` prompt: `overhead_ms` of it is
    the fixed serving path, the rest linear in the prompt. Decode is `tpot_ms` per step
    until the batch turns it compute-bound. The router corrects it like any other prior.
    """
    overhead = min(overhead_ms, ttft_ms * 0.9)
    return ReplicaModel(
        gpu=name, model=name, precision="fp16", precision_note="measured prior", tp=1,
        price_per_hour=price_per_hour, kv_capacity=kv_capacity, max_num_seqs=max_num_seqs,
        context_length=context_length, overhead=0.0, mem_fixed=tpot_ms / 1e3,
        mem_per_token=0.0,
        flop_per_token=(ttft_ms - overhead) / 1e3 / reference_prompt_tokens,
        attn_per_token2=0.0, request_overhead=overhead / 1e3)


def generation_throughput(replica: ReplicaModel, batch: int, prompt_tokens: int,
                          output_tokens: int) -> float:
    """Output tokens/s of a replica running a fixed batch of identical requests to completion.

    The seed's benchmark shape (batch 64, 128 in / 2048 out): one prefill of the batch,
    then `output_tokens` decode iterations whose KV grows from `prompt` to `prompt+output`.
    """
    prefill = replica.prefill_time(batch * prompt_tokens,
                                   square_sum=batch * prompt_tokens * prompt_tokens)
    decode = sum(replica.decode_step(batch, batch * (prompt_tokens + step))
                 for step in range(output_tokens))
    return batch * output_tokens / (prefill + decode)

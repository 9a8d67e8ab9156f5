"""Roofline latency model of one serving replica (a GPU type, a model, a precision, a TP degree).

Serving is two different workloads. Prefill pushes every prompt token through every
weight at once, so it is bound by FLOPs. Decode produces one token per running sequence
per iteration and must stream all weights plus the batch's whole KV cache from memory
each time, so it is bound by bandwidth until the batch is large enough to turn it
compute-bound. Both are written as `fixed + slope x load` so the simulator can sum
iterations in closed form, and both take efficiency factors that measurements refine
(`tandem.planner.fit`). The same model is the router's prior.
"""

from __future__ import annotations

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

MAX_NUM_SEQS = 256  # vLLM's default cap on sequences in one batch
MAX_PREFILL_TOKENS = 8192  # prompt tokens admitted per iteration (chunked-prefill budget)


@dataclass(frozen=True)
class ReplicaModel:
    """Latency of one replica; times in seconds.

    Decode iteration with batch B holding K cached tokens:
        step(B, K) = overhead + max(mem_fixed + mem_per_token * K, flop_per_token * B)
    Prefill of P prompt tokens (riding along with a decode of the running batch):
        overhead + max(memory part, flop_per_token * (P + B) + attn_per_token2 * sum(L^2))
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

    def decode_tokens_per_s(self, batch: int, context_tokens: float) -> float:
        """Generated tokens per second with `batch` sequences of `context_tokens` each."""
        return batch / self.decode_step(batch, batch * context_tokens)

    def max_concurrent_seqs(self, tokens_per_seq: float) -> int:
        """Sequences that fit the KV cache at once (reserving prompt + output each)."""
        if tokens_per_seq <= 0:
            return self.max_num_seqs
        return max(0, min(self.max_num_seqs, int(self.kv_capacity // tokens_per_seq)))


def build_replica_model(catalog: Catalog, gpu: GpuSpec | str, model: ModelProfile,
                        precision: str, tp: int | None = None) -> ReplicaModel:
    """The latency model of one replica; picks the smallest fitting TP degree unless given."""
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
        attn_per_token2=attn_flops_per_token2 / flops)


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

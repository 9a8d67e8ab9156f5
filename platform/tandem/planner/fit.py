"""Fit the perf model's efficiency factors to measured TTFT/TPOT, per GPU type.

Datasheet peaks are never reached; how far below them a given engine runs is an
empirical fact. With TPOT = overhead + bytes/(peak bandwidth x e_bw) and
TTFT = overhead + FLOPs/(peak FLOPS x e_c), both are linear in (overhead, 1/e_bw, 1/e_c),
so one least-squares solve per GPU recovers them. The result is a catalog override
file, so fitted values live in the same one place as every other GPU fact.

CSV columns: gpu, model, precision, tp, batch_size, prompt_tokens, context_tokens,
ttft_ms, tpot_ms (context_tokens: mean tokens in each running sequence's KV cache).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tandem.catalog import Catalog, resolve_precision
from tandem.errors import UserError

COLUMNS = ("gpu", "model", "precision", "tp", "batch_size", "prompt_tokens", "context_tokens",
           "ttft_ms", "tpot_ms")


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path} lacks column(s) {', '.join(missing)}")
            return list(reader)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None


def fit_efficiency(path: Path, catalog: Catalog) -> dict[str, Any]:
    """Catalog override `{"gpus": {GPU: {"efficiency": {...}}}}` fitted from measurements."""
    design: dict[str, list[tuple[list[float], float]]] = defaultdict(list)
    for line, row in enumerate(_rows(path), start=2):
        try:
            gpu = catalog.gpu(row["gpu"])
            model = catalog.model(row["model"])
            precision = resolve_precision(gpu, row["precision"]).effective
            tp, batch = int(row["tp"]), int(row["batch_size"])
            prompt, context = float(row["prompt_tokens"]), float(row["context_tokens"])
            ttft, tpot = float(row["ttft_ms"]) / 1e3, float(row["tpot_ms"]) / 1e3
        except (TypeError, ValueError):
            raise UserError(f"{path} line {line}: cannot parse {row}") from None
        if tp < 1:
            raise UserError(f"{path} line {line}: tp must be at least 1, got {tp}")
        bandwidth = gpu.memory_bandwidth_tbps * 1e12 * tp
        flops = gpu.tflops[precision] * 1e12 * tp
        kv_bytes = model.kv_bytes_per_token(precision) * batch * context
        moved = model.weight_bytes(precision) + kv_bytes
        work = 2 * model.params_b * 1e9 * prompt
        design[gpu.name].append(([1.0, moved / bandwidth, 0.0], tpot))
        design[gpu.name].append(([1.0, 0.0, work / flops], ttft))
    if not design:
        raise UserError(f"{path} has no measurements")
    overrides: dict[str, Any] = {"gpus": {}}
    for name, samples in design.items():
        if len(samples) < 6:
            raise UserError(f"{name}: need at least 3 measurements to fit, got {len(samples) // 2}")
        matrix = np.array([x for x, _ in samples])
        target = np.array([y for _, y in samples])
        (overhead, inv_bandwidth, inv_compute), *_ = np.linalg.lstsq(matrix, target, rcond=None)
        overrides["gpus"][name] = {"efficiency": {
            "compute": float(np.clip(1 / max(inv_compute, 1e-9), 0.01, 1.0)),
            "bandwidth": float(np.clip(1 / max(inv_bandwidth, 1e-9), 0.01, 1.0)),
            "step_overhead_ms": float(max(0.0, overhead) * 1e3)}}
    return overrides

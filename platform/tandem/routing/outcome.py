"""Whether a request met its latency targets, judged from what was measured.

The router's decision only *predicts* that a pool meets a request's targets; this is
the outcome that SLO metrics, attainment figures and the latency trigger count, and
`ttft_calibration` compares the two. Pure, so the ingress, the benchmarks and the tests
judge a request the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def slo_met(status: int, stream: bool, ttft_target_ms: float | None,
            tpot_target_ms: float | None, ttft_ms: float | None, tpot_ms: float | None,
            e2e_ms: float, completion_tokens: int) -> bool | None:
    """True when the measurement (`ttft_ms`, `tpot_ms`, `e2e_ms`) meets every target the
    request was routed against (`ttft_target_ms`, `tpot_target_ms`: its decision's); None when
    it had none or did not succeed (status other than 200).

    Streamed: TTFT and TPOT each within its target (a response of one token has no TPOT).
    Not streamed, the client sees only the whole response, so it meets its targets when
    `e2e_ms <= ttft_target + tpot_target * (completion_tokens - 1)` (a missing target
    adds nothing to that budget).
    """
    if status != 200 or (ttft_target_ms is None and tpot_target_ms is None):
        return None
    if stream:
        ttft_ok = ttft_target_ms is None or (ttft_ms is not None and ttft_ms <= ttft_target_ms)
        tpot_ok = tpot_target_ms is None or tpot_ms is None or tpot_ms <= tpot_target_ms
        return ttft_ok and tpot_ok
    budget = (ttft_target_ms or 0.0) + (tpot_target_ms or 0.0) * max(0, completion_tokens - 1)
    return e2e_ms <= budget


@dataclass(frozen=True)
class Calibration:
    """How well one pool's TTFT predictions matched measurements."""

    pool: str
    requests: int  # the requests the figures rest on (after the skipped first ones)
    median_error: float  # median of |predicted - measured| / measured
    predicted_p50_ms: float
    measured_p50_ms: float
    # the same error for a predictor that always said `measured_p50_ms`: the spread of the
    # measurements themselves, which no prediction from load and size alone gets below
    constant_error: float


CALIBRATION_COLUMNS = ("pool", "predicted_ttft_ms", "ttft_ms")  # what `ttft_calibration` reads


def ttft_calibration(rows: Iterable[Mapping], skip_first: int = 20) -> dict[str, Calibration]:
    """Per pool, the TTFT prediction logged at decision time against the TTFT measured, over
    each pool's requests after its first `skip_first` (request-log rows in time order; rows
    without both figures are left out)."""
    by_pool: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row.get("pool") and row.get("predicted_ttft_ms") and row.get("ttft_ms"):
            by_pool.setdefault(row["pool"], []).append((row["predicted_ttft_ms"], row["ttft_ms"]))
    import numpy as np

    out = {}
    for pool, pairs in sorted(by_pool.items()):
        if len(pairs) > skip_first:
            predicted, measured = np.array(pairs[skip_first:]).T
            measured_p50 = float(np.median(measured))
            out[pool] = Calibration(
                pool, len(predicted), float(np.median(abs(predicted - measured) / measured)),
                float(np.median(predicted)), measured_p50,
                float(np.median(abs(measured_p50 - measured) / measured)))
    return out


def format_calibration(calibration: Mapping[str, Calibration], skip_first: int) -> str:
    """`tandem route explain`'s calibration table: one line per pool."""
    if not calibration:
        return (f"calibration: no pool has more than {skip_first} streamed requests with a "
                "logged prediction yet")
    lines = [f"calibration (TTFT, ingress clock; each pool's requests after its first "
             f"{skip_first}):",
             f"  {'pool':<12} {'requests':>8} {'median |err|':>12} {'predicted p50':>13} "
             f"{'measured p50':>12} {'|err| of p50':>12}"]
    for row in calibration.values():
        lines.append(f"  {row.pool:<12} {row.requests:>8} {row.median_error:>12.1%} "
                     f"{row.predicted_p50_ms:>10.1f} ms {row.measured_p50_ms:>9.1f} ms "
                     f"{row.constant_error:>12.1%}")
    lines.append("  (|err| of p50: the error of always predicting the measured median)")
    return "\n".join(lines)

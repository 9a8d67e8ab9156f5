"""Whether a request met its latency targets, judged from what was measured.

The router's decision only *predicts* that a pool meets a request's targets; this is
the outcome that SLO metrics, attainment figures and the latency trigger count. Pure, so
the ingress, the benchmarks and the tests judge a request the same way.
"""

from __future__ import annotations


def slo_met(status: int, stream: bool, ttft_target_ms: float | None,
            tpot_target_ms: float | None, ttft_ms: float | None, tpot_ms: float | None,
            e2e_ms: float, completion_tokens: int) -> bool | None:
    """True when the measurement meets every target the request had; None when it had none
    or did not succeed (status other than 200).

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

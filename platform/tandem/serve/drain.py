"""Retiring a version's pools without cutting what they are still generating.

After traffic moves to a new version (promote, rollback, the end of a canary), requests
routed just before the switch are still streaming from the old version's replicas. The
old apps are deleted once the ingress replicas report none in flight on them, or when
the drain timeout runs out: by default the longest generation the pool allows
(`engine.max_model_len` tokens) at its measured TPOT (p99 of its recent streams in the
request log; the latency prior before any), times 1.5, and at least 10 s. Streams still
running then are cut and the request log books them as cut (`STREAM_CUT_STATUS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tandem.serve.config import ServeAppConfig

DRAIN_MARGIN = 1.5
DRAIN_FLOOR_S = 10.0
TPOT_SAMPLE = 1000  # the pool's most recent streams the measured TPOT is taken over...
TPOT_WINDOW_S = 3600.0  # ... within the last hour (a pool idle longer: its prior stands in)


def prior_tpot_ms(config: ServeAppConfig, pool: str) -> float:
    """A pool's TPOT before any is measured: its prior at a full batch."""
    from tandem.serve.router import pool_prior

    spec = config.pools[pool]
    if spec.prior is not None:
        return spec.prior.tpot_ms
    replica = pool_prior(spec, config.model_profile)
    seqs = spec.engine.max_num_seqs
    return replica.decode_step(seqs, seqs * spec.engine.max_model_len / 2) * 1e3


def drain_timeout_s(config: ServeAppConfig, pool: str, measured_tpot_ms: float | None) -> float:
    """How long a drain of `pool` may wait: the config's `drain_timeout_s`, else the longest
    generation the pool allows at its measured (else prior) TPOT, with a margin."""
    if config.drain_timeout_s is not None:
        return config.drain_timeout_s
    tpot_ms = measured_tpot_ms or prior_tpot_ms(config, pool)
    longest = config.pools[pool].engine.max_model_len * tpot_ms / 1e3
    return max(DRAIN_FLOOR_S, DRAIN_MARGIN * longest)


def measured_tpot_ms(telemetry_root: str) -> dict[str, float]:
    """Per pool, the p99 TPOT of its most recent answered streams, from one read of the
    request log's last hour, three columns (empty when there is no log yet: the priors
    stand in)."""
    import numpy as np
    import pyarrow.compute as pc

    from tandem.telemetry.request_log import read_requests
    from tandem.telemetry.schema import as_utc

    since = as_utc(time.time() - TPOT_WINDOW_S)
    try:
        table = read_requests(telemetry_root, since=since, columns=("pool", "status", "tpot_ms"))
    except Exception:  # no log yet, or unreadable
        return {}
    table = table.filter(pc.and_(pc.equal(table["status"], 200), pc.is_valid(table["tpot_ms"])))
    pools = np.asarray(table["pool"].to_pylist(), dtype=object)
    tpot = table["tpot_ms"].to_numpy()
    return {pool: float(np.percentile(tpot[pools == pool][-TPOT_SAMPLE:], 99))
            for pool in set(pools.tolist()) if pool is not None}


def wait_drained(in_flight: Callable[[], int | None], timeout_s: float,
                 poll_s: float = 0.2) -> tuple[bool, int]:
    """Poll `in_flight` (requests still on the old app; None: not reported yet) until it is 0
    or `timeout_s` passes. Returns (drained, requests left)."""
    deadline = time.monotonic() + timeout_s
    left = in_flight()
    while left != 0:
        if time.monotonic() >= deadline:
            return False, left or 0
        time.sleep(poll_s)
        left = in_flight()
    return True, 0

"""What the analytic TTFT still misses per pool, learned from the requests it answered.

`tandem.routing.latency.LatencyModel` predicts TTFT from the roofline and the pool's batch
(its engines' counts and step time where they report them) with a few learned constants.
What that leaves out depends on the pool's state in ways the formula does not spell out
(closed-loop clients that arrive just as a slot frees, a step slowed by a neighbour that
slows prefill too), so the ratio of measured to predicted TTFT is learned as a function of
two things the router sees: the pool's requests in flight per replica over its batch
limit, and the engine's recent step time. A gradient-boosted regressor (scikit-learn's
`HistGradientBoostingRegressor`) is fitted to the log of that ratio over each pool's last
`SAMPLES_KEPT` requests, off the request path, and evaluated once on a grid of
`LOAD_CELLS` x `STEP_CELLS` cells: the request path reads one number from that table
(`cell`, a multiplication), never the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from math import log2

from tandem.routing.types import PoolState

LOAD_CELLS = 12  # requests per replica over the batch limit, by quarters; the last is open
STEP_CELLS = 12  # engine step: 0 not reported, then half-octaves from 2 ms; the last is open
SAMPLES_KEPT = 400
MIN_SAMPLES = 40  # a pool's table is fitted from this many answered requests on
RATIO_BOUNDS = (0.25, 4.0)  # a table never moves a prediction further
FIT_EVERY_S = 10.0

# One observation: (load, step ms, log(measured / predicted TTFT))
Sample = tuple[float, float, float]


def load_of(pool: PoolState, max_num_seqs: int) -> float:
    """Requests in flight and queued per replica over the batch limit."""
    slots = pool.replicas * max_num_seqs
    return (pool.in_flight + pool.queued) / slots if slots > 0 else 0.0


def cell(ahead: float, slots: int, step_ms: float | None) -> int:
    """The table cell of a pool with `ahead` requests in flight and queued over its `slots`
    (replicas x batch limit) whose engine steps take `step_ms` (None or 0: not reported)."""
    row = int(ahead * 4.0 / slots) if slots > 0 else 0
    if row >= LOAD_CELLS:
        row = LOAD_CELLS - 1
    if not step_ms or step_ms <= 0.0:
        return row * STEP_CELLS
    column = int(2.0 * log2(step_ms)) - 1  # 2 ms -> 1, 2.8 ms -> 2, ...
    if column < 1:
        column = 1
    elif column >= STEP_CELLS:
        column = STEP_CELLS - 1
    return row * STEP_CELLS + column


def cell_of(pool: PoolState, max_num_seqs: int) -> int:
    """`pool`'s table cell (`cell`)."""
    return cell(pool.in_flight + pool.queued, pool.replicas * max_num_seqs, pool.engine_step_ms)


def _cell_centre(index: int) -> tuple[float, float]:
    row, column = divmod(index, STEP_CELLS)
    step_ms = 0.0 if column == 0 else 2.0 ** ((column + 1.5) / 2.0)
    return (row + 0.5) / 4.0, step_ms


def fit_table(samples: Sequence[Sample]) -> tuple[float, ...] | None:
    """The ratio of measured to predicted TTFT in every cell (`cell`), from a regressor
    fitted to `samples`; None under `MIN_SAMPLES`. One thread, so that a fit beside the
    engines on a small machine takes tens of milliseconds, not a core."""
    if len(samples) < MIN_SAMPLES:
        return None
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    features = [(load, _log_step(step_ms)) for load, step_ms, _ in samples]
    targets = [residual for _, _, residual in samples]
    grid = [_cell_centre(index) for index in range(LOAD_CELLS * STEP_CELLS)]
    with threadpool_limits(1):
        model = HistGradientBoostingRegressor(max_iter=50, max_depth=3, min_samples_leaf=20,
                                              learning_rate=0.1)
        model.fit(features, targets)
        predicted = model.predict([(load, _log_step(step_ms)) for load, step_ms in grid])
    low, high = RATIO_BOUNDS
    return tuple(min(max(math.exp(value), low), high) for value in predicted)


def fit_tables(samples: Mapping[str, Sequence[Sample]]) -> dict[str, tuple[float, ...] | None]:
    """`fit_table` for each pool's samples."""
    return {pool: fit_table(pool_samples) for pool, pool_samples in samples.items()}


def _log_step(step_ms: float) -> float:
    """The step as a feature: its log, and unreported steps apart from every measured one."""
    return math.log2(step_ms) if step_ms > 0.0 else -4.0

"""The residual table: cells by load and engine step, a regressor fitted off the request path
and read back as one number per cell."""

import math
import random

import pytest
from tandem.routing.residual import (
    LOAD_CELLS,
    MIN_SAMPLES,
    RATIO_BOUNDS,
    STEP_CELLS,
    cell_of,
    fit_table,
    fit_tables,
    load_of,
)
from tandem.routing.types import PoolState


def state(in_flight=0, queued=0, replicas=1, running=None, waiting=None, step_ms=None):
    return PoolState(name="cheap", gpu="cpu", healthy=True, replicas=replicas,
                     in_flight=in_flight, queued=queued, price_per_hour=0.1,
                     engine_running=running, engine_waiting=waiting, engine_step_ms=step_ms)


def test_cells_follow_load_per_replica_and_step_time_in_half_octaves():
    assert cell_of(state(), 4) == 0
    assert load_of(state(4, 2, replicas=2), 4) == 0.75
    assert cell_of(state(4, 2, replicas=2), 4) == 3 * STEP_CELLS
    # the engine's step where reported: 2 ms is column 1, 4 ms column 3, shorter ones 1
    assert cell_of(state(4, 2, running=3.0, waiting=0.0, step_ms=2.0), 4) == 6 * STEP_CELLS + 1
    assert cell_of(state(1, running=1.0, waiting=0.0, step_ms=4.0), 4) == STEP_CELLS + 3
    assert cell_of(state(1, running=1.0, waiting=0.0, step_ms=0.5), 4) == STEP_CELLS + 1
    last = cell_of(state(400, 400, running=4.0, waiting=0.0, step_ms=10_000.0), 4)
    assert last == LOAD_CELLS * STEP_CELLS - 1  # both open-ended


def _samples(count, rng):
    """TTFT measured at half the formula's once requests wait (load over 1), with noise."""
    samples = []
    for _ in range(count):
        load, step_ms = rng.uniform(0.0, 2.5), rng.choice([0.0, 5.0, 10.0, 20.0])
        samples.append((load, step_ms, (math.log(0.5) if load > 1.0 else 0.0)
                        + rng.gauss(0.0, 0.05)))
    return samples


def test_a_fitted_table_holds_the_ratio_measured_in_each_state():
    table = fit_table(_samples(300, random.Random(1)))
    assert len(table) == LOAD_CELLS * STEP_CELLS
    for in_flight, step_ms in ((2, 10.0), (1, 5.0), (3, None)):  # load 0.25 .. 0.75
        assert table[cell_of(state(in_flight, running=1.0, waiting=0.0, step_ms=step_ms),
                             4)] == pytest.approx(1.0, abs=0.1)
    for queued, step_ms in ((2, 10.0), (4, 20.0), (3, None)):  # load 1.5 .. 2
        assert table[cell_of(state(4, queued, running=4.0, waiting=1.0, step_ms=step_ms),
                             4)] == pytest.approx(0.5, abs=0.05)


def test_too_few_samples_fit_nothing_and_wild_ratios_are_bounded():
    assert fit_table(_samples(MIN_SAMPLES - 1, random.Random(2))) is None
    wild = [(1.0, 10.0, math.log(50.0))] * MIN_SAMPLES
    assert set(fit_table(wild)) == {RATIO_BOUNDS[1]}
    assert fit_tables({"cheap": wild, "fast": []}) == {"cheap": fit_table(wild), "fast": None}

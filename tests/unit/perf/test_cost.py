"""The one cost function (rent, and what a request's share of it is), and the idle limits
the router classifies pools with."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tandem.perf import (
    flat_prior,
    fleet_rent_per_hour,
    idle_limits,
    join_pool,
    pool_constants,
    rent_usd,
    replica_seconds_at_capacity,
    request_cost_usd,
)
from tandem.planner.simulator import Slo, simulate
from tandem.planner.trace import Trace


def _model(catalog, gpu):
    from tandem.perf import build_replica_model
    return build_replica_model(catalog, gpu, catalog.model("llama-3.1-8b"), "fp16")


def test_a_request_costs_the_rent_of_its_replica_time(catalog):
    h100 = _model(catalog, "H100")
    constants = pool_constants(h100)
    seconds = replica_seconds_at_capacity(constants, 500, 200)
    assert request_cost_usd(constants, h100.price_per_hour, 500, 200) == pytest.approx(
        rent_usd(h100.price_per_hour, seconds), rel=1e-12)
    # a full replica: far less than the request alone would hold it (prefill + 199 steps)
    alone = h100.prefill_time(500) + sum(h100.decode_step(1, 500 + i) for i in range(199))
    assert 0 < seconds < alone / 10


def test_bigger_requests_cost_more_and_rent_scales_with_price(catalog):
    constants = pool_constants(_model(catalog, "L4"))
    assert (request_cost_usd(constants, 1.0, 100, 10) < request_cost_usd(constants, 1.0, 1000, 10)
            < request_cost_usd(constants, 1.0, 1000, 500))
    assert request_cost_usd(constants, 2.0, 300, 30) == pytest.approx(
        2 * request_cost_usd(constants, 1.0, 300, 30))
    assert rent_usd(3.6, 3600) == pytest.approx(3.6)
    assert fleet_rent_per_hour([(2.1, 3), (0.7, 2)]) == pytest.approx(7.7)


def test_the_simulator_prices_a_fleet_with_the_same_rent(catalog):
    h100, l4 = _model(catalog, "H100"), _model(catalog, "L4")
    count = 40
    trace = Trace(np.arange(count) * 0.5, np.full(count, 300, np.int64),
                  np.full(count, 50, np.int64))
    result = simulate(trace, {"H100": (h100, 2), "L4": (l4, 1)}, Slo(1000, 100))
    rent = fleet_rent_per_hour([(h100.price_per_hour, 2), (l4.price_per_hour, 1)])
    assert result.cost_per_hour == rent
    assert result.cost_per_1k_requests == pytest.approx(
        rent_usd(rent, trace.duration_s) / result.served * 1e3)


def test_a_flat_prior_splits_its_ttft_into_overhead_and_prefill():
    prior = flat_prior(40.0, 10.0, 0.1, reference_prompt_tokens=32, overhead_ms=15.0)
    assert prior.request_overhead == pytest.approx(0.015)
    assert prior.request_overhead + prior.prefill_time(32) == pytest.approx(0.040)
    assert flat_prior(5.0, 1.0, 0.1, overhead_ms=50.0).request_overhead < 0.005


@settings(max_examples=200, deadline=None)
@given(gpu=st.sampled_from(["H100", "L4", "A100-80G"]), prompt=st.integers(1, 8000),
       output=st.integers(1, 2000), ttft_ms=st.floats(5, 2000), tpot_ms=st.floats(1, 200))
def test_idle_limits_agree_with_join_pool(catalog, gpu, prompt, output, ttft_ms, tpot_ms):
    constants = pool_constants(_model(catalog, gpu))
    overhead, service, _, step, _ = join_pool(constants, 0, 0, 1, prompt, output)
    max_prompt, max_context = idle_limits(constants, ttft_ms / 1e3, tpot_ms / 1e3)
    within = prompt <= max_prompt and prompt + 0.5 * output <= max_context
    meets = (overhead + service) * 1e3 <= ttft_ms and step * 1e3 <= tpot_ms
    assume(abs((overhead + service) * 1e3 - ttft_ms) > 1e-6 and abs(step * 1e3 - tpot_ms) > 1e-6)
    assert within == meets

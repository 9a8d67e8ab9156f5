import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.perf import flat_prior
from tandem.routing.latency import LatencyModel
from tandem.routing.types import PoolState, RequestFeatures

REQUEST = RequestFeatures(prompt_tokens=400, max_tokens=100)


def pool(name="H100", in_flight=0, queued=0, replicas=1, price=2.1):
    return PoolState(name=name, gpu=name, healthy=True, replicas=replicas, in_flight=in_flight,
                     queued=queued, price_per_hour=price)


def test_cold_start_predicts_from_the_prior(priors):
    model = LatencyModel(priors)
    prediction = model.predict(pool(), REQUEST, 0.0)
    replica = priors["H100"]
    assert prediction.ttft_ms == pytest.approx(replica.prefill_time(400) * 1e3, rel=0.05)
    assert prediction.tpot_ms == pytest.approx(replica.decode_step(1, 450) * 1e3, rel=0.05)


def test_first_observation_counts_almost_fully(priors):
    model = LatencyModel(priors, alpha=0.2)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, REQUEST, 1.0, ttft_ms=prior.ttft_ms * 3, tpot_ms=prior.tpot_ms * 2)
    after = model.predict(state, REQUEST, 1.0)
    assert after.ttft_ms == pytest.approx(prior.ttft_ms * 3, rel=0.05)
    assert after.tpot_ms == pytest.approx(prior.tpot_ms * 2)
    assert model.predict(pool("H200", price=2.5), REQUEST, 1.0) == LatencyModel(priors).predict(
        pool("H200", price=2.5), REQUEST, 1.0)  # corrections are per pool


def test_adapts_within_twenty_requests_after_a_slowdown_and_after_the_recovery(priors):
    model = LatencyModel(priors, alpha=0.2, stale_half_life_s=None)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    for step in range(30):  # healthy: observations match the prior (with noise)
        noise = 1.1 if step % 2 else 0.9
        model.observe(state, REQUEST, step, ttft_ms=prior.ttft_ms * noise,
                      tpot_ms=prior.tpot_ms * noise)
    assert model.predict(state, REQUEST, 30).tpot_ms == pytest.approx(prior.tpot_ms, rel=0.1)
    for step in range(30, 50):  # the pool slows down 4x (a throttled card)
        model.observe(state, REQUEST, step, ttft_ms=prior.ttft_ms * 4, tpot_ms=prior.tpot_ms * 4)
    slowed = model.predict(state, REQUEST, 50)
    assert slowed.tpot_ms == pytest.approx(4 * prior.tpot_ms, rel=0.15)
    assert slowed.ttft_ms == pytest.approx(4 * prior.ttft_ms, rel=0.15)
    for step in range(50, 70):  # the card recovers
        model.observe(state, REQUEST, step, ttft_ms=prior.ttft_ms, tpot_ms=prior.tpot_ms)
    recovered = model.predict(state, REQUEST, 70)
    assert recovered.tpot_ms == pytest.approx(prior.tpot_ms, rel=0.2)
    assert recovered.ttft_ms == pytest.approx(prior.ttft_ms, rel=0.2)


def test_queue_wait_is_learned_separately_from_service_time(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    idle, queued = pool(), pool(in_flight=10, queued=20)
    model.observe(idle, REQUEST, 0.0, ttft_ms=model.predict(idle, REQUEST, 0).ttft_ms)
    expected = model.predict(queued, REQUEST, 0.0).ttft_ms
    for step in range(20):  # the waiting line moves 3x slower than modelled
        model.observe(queued, REQUEST, step, ttft_ms=expected * 3)
    assert model.corrections["H100"].queue > 2.5
    assert model.corrections["H100"].service == pytest.approx(1.0)
    assert model.predict(idle, REQUEST, 20).ttft_ms < expected  # idle TTFT untouched
    assert model.predict(queued, REQUEST, 20).ttft_ms == pytest.approx(3 * expected, rel=0.1)


def test_queue_and_batch_raise_predictions(priors):
    model = LatencyModel(priors)
    idle = model.predict(pool(), REQUEST, 0.0)
    busy = model.predict(pool(in_flight=100), REQUEST, 0.0)
    queued = model.predict(pool(in_flight=100, queued=50), REQUEST, 0.0)
    assert idle.ttft_ms < busy.ttft_ms < queued.ttft_ms
    assert idle.tpot_ms < busy.tpot_ms
    spread = model.predict(pool(in_flight=100, queued=50, replicas=4), REQUEST, 0.0)
    assert spread.ttft_ms < queued.ttft_ms


def test_stale_corrections_decay_back_to_the_prior(priors):
    model = LatencyModel(priors, stale_half_life_s=100.0)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, REQUEST, 0.0, tpot_ms=prior.tpot_ms * 5)
    assert model.predict(state, REQUEST, 100.0).tpot_ms == pytest.approx(prior.tpot_ms * 3)
    assert model.predict(state, REQUEST, 10_000.0).tpot_ms == pytest.approx(prior.tpot_ms)


def test_outliers_are_bounded_and_unknown_pools_get_a_prior(priors):
    model = LatencyModel(priors)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, REQUEST, 0.0, tpot_ms=prior.tpot_ms * 1e9)
    assert model.predict(state, REQUEST, 0.0).tpot_ms <= prior.tpot_ms * 100.001
    hinted = PoolState(name="cpu-a", gpu="cpu", healthy=True, replicas=1, in_flight=0,
                       queued=0, price_per_hour=0.1, predicted_ttft_ms=80.0,
                       predicted_tpot_ms=12.0)
    guess = model.predict(hinted, RequestFeatures(512, 10), 0.0)
    assert guess.ttft_ms == pytest.approx(80.0) and guess.tpot_ms == pytest.approx(12.0, rel=0.1)
    blind = model.predict(pool("mystery"), REQUEST, 0.0)
    assert blind.ttft_ms > 0 and blind.tpot_ms > 0


def test_flat_prior_for_local_pools():
    cpu = flat_prior(60.0, 15.0, 0.05, name="cpu-fast")
    model = LatencyModel({"cpu-fast": cpu})
    prediction = model.predict(pool("cpu-fast"), RequestFeatures(512, 20), 0.0)
    assert prediction.ttft_ms == pytest.approx(60.0)
    assert prediction.tpot_ms == pytest.approx(15.0, rel=0.1)


def predicted_e2e_ms(prediction, request):
    return prediction.ttft_ms + (request.max_tokens - 1) * prediction.tpot_ms


def test_end_to_end_observation_scales_ttft_and_tpot_alike(priors):
    model = LatencyModel(priors, alpha=0.2, stale_half_life_s=None)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    slow = 3 * predicted_e2e_ms(prior, REQUEST)
    for step in range(10):  # a non-streamed pool that takes 3x as long as predicted
        model.observe(state, REQUEST, step, e2e_ms=slow)
    learned = model.predict(state, REQUEST, 10)
    assert learned.ttft_ms == pytest.approx(3 * prior.ttft_ms, rel=0.05)
    assert learned.tpot_ms == pytest.approx(3 * prior.tpot_ms, rel=0.05)
    assert predicted_e2e_ms(learned, REQUEST) == pytest.approx(slow, rel=0.05)


def test_end_to_end_observation_matching_the_prediction_changes_nothing(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    for step in range(5):
        model.observe(state, REQUEST, step, e2e_ms=predicted_e2e_ms(prior, REQUEST))
    after = model.predict(state, REQUEST, 5)
    assert after.ttft_ms == pytest.approx(prior.ttft_ms)
    assert after.tpot_ms == pytest.approx(prior.tpot_ms)


def test_end_to_end_observation_builds_on_learned_corrections(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, REQUEST, 0.0, ttft_ms=prior.ttft_ms * 2, tpot_ms=prior.tpot_ms * 2)
    model.observe(state, REQUEST, 1.0, e2e_ms=2 * predicted_e2e_ms(prior, REQUEST))
    after = model.predict(state, REQUEST, 1.0)  # already predicted 2x: nothing new learned
    assert after.ttft_ms == pytest.approx(2 * prior.ttft_ms, rel=0.05)
    assert after.tpot_ms == pytest.approx(2 * prior.tpot_ms, rel=0.05)


def test_end_to_end_without_decode_steps_updates_only_ttft(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    state = pool()
    single = RequestFeatures(prompt_tokens=400, max_tokens=1)
    prior_single = model.predict(state, single, 0.0)
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, single, 0.0, e2e_ms=prior_single.ttft_ms * 4)
    after = model.predict(state, REQUEST, 0.0)
    assert after.ttft_ms == pytest.approx(4 * prior.ttft_ms, rel=0.05)
    assert after.tpot_ms == pytest.approx(prior.tpot_ms)
    assert model.corrections["H100"].tpot_count == 0


def test_unusable_end_to_end_observations_are_ignored(priors):
    model = LatencyModel(priors)
    state = pool()
    prior = model.predict(state, REQUEST, 0.0)
    model.observe(state, REQUEST, 0.0, e2e_ms=0.0)
    model.observe(state, REQUEST, 0.0, e2e_ms=-5.0)
    assert model.predict(state, REQUEST, 0.0) == prior


def test_a_short_request_behind_long_ones_waits_for_theirs():
    cpu = flat_prior(40.0, 10.0, 0.1, name="cheap", max_num_seqs=4, overhead_ms=10.0)
    model = LatencyModel({"cheap": cpu})
    short = RequestFeatures(prompt_tokens=16, max_tokens=16)

    def full(owed):  # 4 running, 2 waiting
        return PoolState(name="cheap", gpu="cpu", healthy=True, replicas=1, in_flight=4,
                         queued=2, price_per_hour=0.1, owed_output_tokens=owed)

    unknown = model.predict(full(0), short, 0.0).ttft_ms  # its own size stands in
    behind_short = model.predict(full(6 * 16), short, 0.0).ttft_ms
    behind_long = model.predict(full(6 * 64), short, 0.0).ttft_ms
    assert unknown == pytest.approx(behind_short)
    assert behind_long > 2 * behind_short


LOCAL_PRIOR = flat_prior(40.0, 10.0, 0.1, name="cheap", reference_prompt_tokens=32,
                         max_num_seqs=4, context_length=128)
SHORT = RequestFeatures(prompt_tokens=16, max_tokens=64)


def engine_pool(in_flight=4, queued=3, running=None, waiting=None, kv=None, step_ms=None):
    return PoolState(name="cheap", gpu="cpu", healthy=True, replicas=1, in_flight=in_flight,
                     queued=queued, price_per_hour=0.1, engine_running=running,
                     engine_waiting=waiting, kv_cache_usage=kv, engine_step_ms=step_ms)


def test_an_engine_holding_requests_waiting_has_no_slot_beyond_the_batch_it_runs():
    model = LatencyModel({"cheap": LOCAL_PRIOR})  # max_num_seqs 4
    counted = model.predict(engine_pool(3, 0), SHORT, 0.0).ttft_ms  # a slot free, by the count
    assert counted == pytest.approx(model.predict(
        engine_pool(3, 0, running=3.0, waiting=0.0), SHORT, 0.0).ttft_ms)
    # the engine runs 3 and holds 1 waiting: its KV cache, not max_num_seqs, is the limit
    full = model.predict(engine_pool(3, 0, running=3.0, waiting=1.0, step_ms=10.0), SHORT,
                         0.0).ttft_ms
    assert full - counted == pytest.approx(1 / 3 * 64 * 10.0, rel=0.05)


def test_a_slower_engine_step_lengthens_the_wait_for_a_slot_by_as_much():
    model = LatencyModel({"cheap": LOCAL_PRIOR})
    idle = model.predict(engine_pool(0, 0, running=0.0, waiting=0.0, step_ms=40.0), SHORT, 0.0)
    assert idle.ttft_ms == pytest.approx(model.predict(engine_pool(0, 0), SHORT, 0.0).ttft_ms)
    fast, slow = (model.predict(engine_pool(4, 1, running=4.0, waiting=1.0, step_ms=step),
                                SHORT, 0.0).ttft_ms for step in (10.0, 40.0))
    # two requests ahead of a free slot: 2 / 4 slots x 64 tokens x the step
    assert slow - fast == pytest.approx(2 / 4 * 64 * 30.0, rel=0.01)


def test_a_full_kv_cache_makes_the_request_wait_for_a_batch_mate_to_end():
    model = LatencyModel({"cheap": LOCAL_PRIOR})
    roomy, full = (model.predict(engine_pool(2, 0, running=2.0, waiting=0.0, kv=kv,
                                             step_ms=10.0), SHORT, 0.0).ttft_ms
                   for kv in (0.5, 1.0 - 8 / LOCAL_PRIOR.kv_capacity))
    assert full - roomy == pytest.approx(1 / 2 * 64 * 10.0, rel=0.01)  # 1 of 2 slots to free


def test_learned_residuals_scale_the_prediction_in_the_pools_state():
    from tandem.routing.residual import LOAD_CELLS, STEP_CELLS, cell_of

    model = LatencyModel({"cheap": LOCAL_PRIOR})
    busy = engine_pool(4, 2, running=4.0, waiting=2.0, step_ms=10.0)
    before = model.predict(busy, SHORT, 0.0).ttft_ms
    table = [1.0] * (LOAD_CELLS * STEP_CELLS)
    table[cell_of(busy, LOCAL_PRIOR.max_num_seqs)] = 0.5
    model.set_residuals({"cheap": tuple(table), "fast": None})
    assert model.predict(busy, SHORT, 0.0).ttft_ms == pytest.approx(before / 2)
    idle = engine_pool(0, 0)
    assert model.predict(idle, SHORT, 0.0) == LatencyModel({"cheap": LOCAL_PRIOR}).predict(
        idle, SHORT, 0.0)
    assert set(model.residuals) == {"cheap"}


def test_each_ttft_observation_is_kept_as_a_residual_sample():
    model = LatencyModel({"cheap": LOCAL_PRIOR})
    busy = engine_pool(4, 2, running=4.0, waiting=2.0, step_ms=10.0)
    predicted = model.predict(busy, SHORT, 0.0).ttft_ms
    model.observe(busy, SHORT, 1.0, ttft_ms=predicted / 2)
    model.observe(busy, SHORT, 1.0, tpot_ms=10.0)  # no TTFT: nothing to learn a residual from
    [(load, step_ms, log_ratio)] = model.residual_samples()["cheap"]
    assert (load, step_ms) == (1.5, 10.0) and log_ratio == pytest.approx(math.log(0.5))


@settings(max_examples=100, deadline=None)
@given(in_flight=st.integers(0, 200), queued=st.integers(0, 40),
       step_ms=st.floats(1.0, 500.0), prompt=st.integers(1, 4000))
def test_property_tpot_is_never_predicted_below_the_step_the_engines_report(
        priors, in_flight, queued, step_ms, prompt):
    model = LatencyModel(priors)
    reported = replace(pool(in_flight=in_flight, queued=queued), engine_step_ms=step_ms)
    request = RequestFeatures(prompt_tokens=prompt, max_tokens=100)
    assert model.predict(reported, request, 0.0).tpot_ms >= step_ms


def test_a_slowed_engine_is_predicted_slow_before_any_request_finishes(priors):
    model = LatencyModel(priors)
    state = pool(in_flight=20)
    before = model.predict(state, REQUEST, 0.0).tpot_ms
    slowed = replace(state, engine_step_ms=3 * before)
    assert model.predict(slowed, REQUEST, 0.0).tpot_ms == pytest.approx(3 * before)


def test_a_wait_outgrowing_its_prediction_raises_the_queue_ratio_before_the_first_token(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    queued = pool(in_flight=10, queued=20)
    expected = model.predict(queued, REQUEST, 0.0).ttft_ms
    model.observe_waiting(queued, REQUEST, 1.0, waited_ms=0.5 * expected)
    assert "H100" not in model.corrections or model.corrections["H100"].queue == 1.0
    for step in range(5):  # still no first token, three times the predicted wait
        model.observe_waiting(queued, REQUEST, 2.0 + step, waited_ms=3 * expected)
    assert model.corrections["H100"].queue > 2.0
    assert model.corrections["H100"].service == 1.0  # a bound says nothing of the line
    assert model.predict(queued, REQUEST, 7.0).ttft_ms > 2 * expected


def test_a_long_wait_on_an_unqueued_pool_teaches_nothing(priors):
    model = LatencyModel(priors, stale_half_life_s=None)
    idle = pool()
    model.observe_waiting(idle, REQUEST, 1.0, waited_ms=10_000)
    assert "H100" not in model.corrections

import math
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tandem.perf import join_pool, pool_constants, request_cost_usd
from tandem.routing.config import RoutingConfig, TierTargets
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.latency import LatencyModel
from tandem.routing.policy import NoHealthyPool, RoutingPolicy
from tandem.routing.types import PoolState, RequestFeatures

GPUS = ("H100", "H200", "A100-80G", "L4")


def state(name, priors, in_flight=0, queued=0, replicas=1, healthy=True):
    return PoolState(name=name, gpu=name, healthy=healthy, replicas=replicas,
                     in_flight=in_flight, queued=queued,
                     price_per_hour=priors[name].price_per_hour)


def fleet(priors, **loads):
    return [state(gpu, priors, in_flight=loads.get(gpu.replace("-", "_"), 0)) for gpu in GPUS]


def every_pool(policy, request, pools, now=0.0):
    """Pool -> (TTFT ms, TPOT ms, rent USD) for every pool, predicted one by one: what a
    decision that predicts only the pools it needs must agree with."""
    return {pool.name: (*policy.latency.predict(pool, request, now),
                        request_cost_usd(policy.latency.constants(pool), pool.price_per_hour,
                                         request.prompt_tokens, request.max_tokens))
            for pool in pools}


def test_is_a_routing_policy(priors):
    assert isinstance(LatencyCostPolicy(priors), RoutingPolicy)


def test_tight_targets_avoid_the_slow_cheap_gpu_and_loose_ones_take_the_cheapest(priors):
    policy = LatencyCostPolicy(priors)
    pools = fleet(priors)
    request = RequestFeatures(500, 200, tier="interactive")
    interactive = policy.pick_pool(request, pools, 0.0)
    every = every_pool(policy, request, pools)
    assert every["L4"][1] > 25  # ~70 ms per token on L4 misses a 25 ms TPOT
    assert interactive.pool != "L4" and not interactive.predicted_slo_miss
    meeting = [cost for ttft, tpot, cost in every.values() if ttft <= 300 and tpot <= 25]
    assert interactive.predicted_cost_usd == min(meeting)
    assert interactive.reason.startswith("cheapest meeting")
    # every pool was either predicted or rents for more than the one chosen
    predicted = {c.pool for c in interactive.candidates}
    assert all(every[pool][2] > interactive.predicted_cost_usd for pool in set(every) - predicted)


def test_loose_traffic_leaves_the_pools_fast_enough_for_the_strictest_tier_free(priors):
    policy = LatencyCostPolicy(priors)  # strictest tier: interactive, TTFT 300 ms, TPOT 25 ms
    pools = [state("H100", priors), state("L4", priors)]
    batch = policy.pick_pool(RequestFeatures(500, 200, tier="batch"), pools, 0.0)
    by_pool = {c.pool: c for c in batch.candidates}
    # H100 is cheaper per request...
    assert by_pool["H100"].predicted_cost_usd < by_pool["L4"].predicted_cost_usd
    assert by_pool["L4"].meets_slo and by_pool["L4"].predicted_tpot_ms > 25  # ...L4 meets batch only
    assert batch.pool == "L4" and "stay free" in batch.reason
    interactive = policy.pick_pool(RequestFeatures(500, 200, tier="interactive"), pools, 0.0)
    assert interactive.pool == "H100"
    full = [state("H100", priors), state("L4", priors, in_flight=40, queued=200)]
    assert policy.pick_pool(RequestFeatures(500, 200, tier="batch"), full, 0.0).pool == "H100"
    # a fast pool that is busy, or that was seen slow under load, is still a fast pool
    busy = [state("H100", priors, in_flight=250), state("L4", priors),
            state("H200", priors, in_flight=250)]
    policy.observe(busy[2], RequestFeatures(500, 200), 0.0, ttft_ms=2000.0, tpot_ms=200.0)
    assert policy.pick_pool(RequestFeatures(500, 200, tier="batch"), busy, 0.0).pool == "L4"


def test_predictions_follow_the_roofline(priors):
    decision = LatencyCostPolicy(priors).pick_pool(RequestFeatures(1000, 100), fleet(priors), 0)
    tpot = {c.pool: c.predicted_tpot_ms for c in decision.candidates}
    # decode is bandwidth-bound: H200 (4.8 TB/s) < H100 (3.35) < A100 (2.0) < L4 (0.3)
    assert tpot["H200"] < tpot["H100"] < tpot["A100-80G"] < tpot["L4"]
    assert 3 < tpot["H100"] < 10 and 50 < tpot["L4"] < 100


def test_no_pool_meets_the_targets_picks_the_fastest_and_flags_a_miss(priors):
    request = RequestFeatures(8000, 100, requested_ttft_ms=1.0, requested_tpot_ms=1.0)
    decision = LatencyCostPolicy(priors).pick_pool(request, fleet(priors), 0.0)
    assert decision.predicted_slo_miss and "fastest" in decision.reason
    fastest = min(decision.candidates, key=lambda c: (max(c.predicted_ttft_ms, c.predicted_tpot_ms),
                                                      c.predicted_cost_usd))
    # H100 and H200 prefill equally fast: H100 takes less rent per request of this size
    assert decision.pool == fastest.pool == "H100"


def test_unhealthy_empty_and_saturated_pools_are_skipped(priors):
    config = RoutingConfig.gpu_defaults().model_copy(update={"max_queued_per_replica": 4})
    policy = LatencyCostPolicy(priors, config)
    request = RequestFeatures(500, 100, tier="batch")
    pools = [state("L4", priors, healthy=False), state("H200", priors, queued=4),
             state("H100", priors, replicas=0), state("A100-80G", priors)]
    decision = policy.pick_pool(request, pools, 0.0)
    assert decision.pool == "A100-80G"
    assert [c.pool for c in decision.candidates] == ["A100-80G"]
    only_saturated = [state("H200", priors, queued=10), state("L4", priors, healthy=False)]
    fallback = policy.pick_pool(request, only_saturated, 0.0)
    assert fallback.pool == "H200" and fallback.reason.startswith("all pools saturated")
    with pytest.raises(NoHealthyPool):
        policy.pick_pool(request, [state("L4", priors, healthy=False)], 0.0)


def test_load_raises_predicted_latency_and_moves_traffic(priors):
    policy = LatencyCostPolicy(priors)
    request = RequestFeatures(500, 100, tier="interactive")
    idle = policy.pick_pool(request, fleet(priors), 0.0)
    loaded_pools = [state(p.name, priors, in_flight=200, queued=40) if p.name == idle.pool
                    else p for p in fleet(priors)]
    moved = policy.pick_pool(request, loaded_pools, 0.0)
    assert moved.pool != idle.pool
    before = {c.pool: c.predicted_ttft_ms for c in idle.candidates}
    after = {c.pool: c.predicted_ttft_ms for c in moved.candidates}
    assert after[idle.pool] > 10 * before[idle.pool]


def test_max_cost_is_a_constraint(priors):
    policy = LatencyCostPolicy(priors)
    free = policy.pick_pool(RequestFeatures(500, 200, tier="batch"), fleet(priors), 0.0)
    costs = sorted(c.predicted_cost_usd for c in free.candidates)
    cap = (costs[0] + costs[1]) / 2  # only the cheapest pool fits under it
    capped = policy.pick_pool(RequestFeatures(500, 200, tier="batch", max_cost_usd=cap),
                              fleet(priors), 0.0)
    assert capped.predicted_cost_usd <= cap
    assert [c.within_cost for c in capped.candidates].count(True) == 1
    impossible = policy.pick_pool(RequestFeatures(500, 200, max_cost_usd=1e-12), fleet(priors), 0)
    assert "max cost" in impossible.reason and impossible.predicted_cost_usd == costs[0]


def test_tier_budget_cap_spills_to_the_cheapest_pool(priors):
    tiers = dict(RoutingConfig.gpu_defaults().tiers)
    tiers["standard"] = TierTargets(ttft_ms=1000, tpot_ms=8, budget_per_hour=10.0)
    policy = LatencyCostPolicy(priors, RoutingConfig(tiers=tiers))
    request = RequestFeatures(500, 200, tier="standard")
    pools = fleet(priors, H100=200)  # the cheapest per request, but too busy for TPOT 8 ms
    under = policy.pick_pool(request, pools, 0.0)
    cheapest = min(under.candidates, key=lambda c: c.predicted_cost_usd)
    assert cheapest.pool == "H100" and not cheapest.meets_slo
    assert under.pool != "H100" and not under.predicted_slo_miss
    policy.set_spend_rates({"standard": 10.0, "interactive": 99.0})
    spilled = policy.pick_pool(request, pools, 0.0)
    assert spilled.pool == cheapest.pool and spilled.predicted_slo_miss
    assert "budget reached" in spilled.reason
    interactive = policy.pick_pool(RequestFeatures(500, 200, tier="interactive"), pools, 0.0)
    assert "budget" not in interactive.reason  # no cap on that tier


def test_the_policy_predicts_with_the_latency_model_and_prices_with_tandem_perf(priors):
    model = LatencyModel(priors)
    policy = LatencyCostPolicy(model)
    request = RequestFeatures(700, 300)
    pools = [state(g, priors, in_flight=40, queued=30, replicas=2) for g in GPUS]
    model.observe(pools[0], request, 0.0, ttft_ms=500.0, tpot_ms=20.0)
    decision = policy.pick_pool(request, pools, 10.0)
    by_name = {pool.name: pool for pool in pools}
    for candidate in decision.candidates:
        pool = by_name[candidate.pool]
        predicted = model.predict(pool, request, 10.0)
        assert candidate.predicted_ttft_ms == pytest.approx(predicted.ttft_ms)
        assert candidate.predicted_tpot_ms == pytest.approx(predicted.tpot_ms)
        expected_cost = request_cost_usd(pool_constants(priors[pool.name]), pool.price_per_hour,
                                         request.prompt_tokens, request.max_tokens)
        assert candidate.predicted_cost_usd == expected_cost


engine_reports = st.one_of(st.none(), st.tuples(
    st.integers(0, 300), st.integers(0, 60), st.floats(0.0, 1.0), st.floats(0.0, 200.0)))


@settings(max_examples=150, deadline=None)
@given(reports=st.lists(engine_reports, min_size=4, max_size=4), request=st.builds(
    RequestFeatures, prompt_tokens=st.integers(1, 8000), max_tokens=st.integers(1, 2000)),
    seed=st.integers(0, 1000))
def test_property_engine_reports_and_residuals_predict_as_the_latency_model_does(
        priors, reports, request, seed):
    import random

    from tandem.routing.residual import LOAD_CELLS, STEP_CELLS

    model = LatencyModel(priors)
    pools = []
    for gpu, report in zip(GPUS, reports, strict=True):
        engine = {}
        if report is not None:
            running, waiting, kv, step_ms = report
            engine = {"engine_running": float(running), "engine_waiting": float(waiting),
                      "kv_cache_usage": kv, "engine_step_ms": step_ms}
        pools.append(replace(state(gpu, priors, in_flight=40, queued=30, replicas=2), **engine))
    rng = random.Random(seed)
    model.set_residuals({gpu: tuple(rng.uniform(0.25, 4.0)
                                    for _ in range(LOAD_CELLS * STEP_CELLS))
                         for gpu in GPUS[:3]})
    decision = LatencyCostPolicy(model).pick_pool(request, pools, 0.0)
    by_name = {pool.name: pool for pool in pools}
    for candidate in decision.candidates:
        predicted = model.predict(by_name[candidate.pool], request, 0.0)
        assert candidate.predicted_ttft_ms == pytest.approx(predicted.ttft_ms)
        assert candidate.predicted_tpot_ms == pytest.approx(predicted.tpot_ms)


pool_loads = st.lists(
    st.tuples(st.sampled_from(GPUS), st.booleans(), st.integers(0, 4), st.integers(0, 300),
              st.integers(0, 100)),
    min_size=1, max_size=8)
requests = st.builds(RequestFeatures, prompt_tokens=st.integers(1, 8000),
                     max_tokens=st.integers(1, 2000),
                     requested_ttft_ms=st.floats(1, 20000), requested_tpot_ms=st.floats(1, 300),
                     tier=st.sampled_from(["interactive", "standard", "batch"]))


def build_pools(priors, loads):
    return [PoolState(name=f"{gpu}-{i}", gpu=gpu, healthy=healthy, replicas=replicas,
                      in_flight=in_flight, queued=queued,
                      price_per_hour=priors[gpu].price_per_hour)
            for i, (gpu, healthy, replicas, in_flight, queued) in enumerate(loads)]


def named_priors(priors, pools):
    return {pool.name: priors[pool.gpu] for pool in pools}


@settings(max_examples=300, deadline=None)
@given(loads=pool_loads, request=requests)
def test_property_the_choice_is_the_rule_over_every_pool_though_not_every_pool_is_predicted(
        priors, loads, request):
    pools = build_pools(priors, loads)
    policy = LatencyCostPolicy(named_priors(priors, pools))
    usable = [p for p in pools if p.healthy and p.replicas > 0]
    if not usable:
        with pytest.raises(NoHealthyPool):
            policy.pick_pool(request, pools, 0.0)
        return
    decision = policy.pick_pool(request, pools, 0.0)
    limit = policy.config.max_queued_per_replica
    considered = [p for p in usable if p.queued < limit * p.replicas] or usable
    every = every_pool(policy, request, considered)  # each pool predicted, one by one
    for candidate in decision.candidates:  # the ones predicted are predicted the same
        assert candidate[1:4] == pytest.approx(every[candidate.pool])
    ttft, tpot = decision.ttft_target_ms, decision.tpot_target_ms  # the request's own
    assert (ttft, tpot) == (request.requested_ttft_ms, request.requested_tpot_ms)
    meeting = {name: v for name, v in every.items() if v[0] <= ttft and v[1] <= tpot}
    if not meeting:
        assert decision.predicted_slo_miss and len(decision.candidates) == len(considered)
        return
    # the rule, over every pool: among the pools with 20 % to spare, a request looser than
    # the strictest tier first considers those too slow for it (by the prior, idle);
    # without a pool to spare, any pool meeting the targets
    headroom = policy.config.headroom
    roomy = {name: v for name, v in meeting.items()
             if v[0] <= headroom * ttft and v[1] <= headroom * tpot}
    ttft_strict, tpot_strict = policy.config.strictest_targets()
    if roomy and (ttft > ttft_strict or tpot > tpot_strict):
        fresh = LatencyModel(named_priors(priors, pools))
        idle = {p.name: fresh.predict(replace(p, in_flight=0, queued=0), request, 0.0)
                for p in considered}
        roomy = {name: v for name, v in roomy.items() if idle[name].ttft_ms > ttft_strict
                 or idle[name].tpot_ms > tpot_strict} or roomy
    meeting = roomy or meeting
    cheapest = min(v[2] for v in meeting.values())
    assert decision.pool in meeting and decision.predicted_cost_usd == cheapest
    assert not decision.predicted_slo_miss
    # and every pool not predicted rents for more than the one chosen
    predicted = {c.pool for c in decision.candidates}
    assert all(every[name][2] > cheapest for name in set(every) - predicted)


@settings(max_examples=150, deadline=None)
@given(loads=pool_loads, request=requests, looser=st.floats(1.0, 10.0))
def test_property_looser_targets_are_still_met(priors, loads, request, looser):
    pools = build_pools(priors, loads)
    assume(any(p.healthy and p.replicas > 0 for p in pools))
    policy = LatencyCostPolicy(named_priors(priors, pools))
    tight = policy.pick_pool(request, pools, 0.0)
    assume(not tight.predicted_slo_miss)  # from "met" to "met more easily"; a miss may be cheaper still
    loose_request = RequestFeatures(request.prompt_tokens, request.max_tokens,
                                    request.requested_ttft_ms * looser,
                                    request.requested_tpot_ms * looser, request.tier)
    loose = policy.pick_pool(loose_request, pools, 0.0)
    assert not loose.predicted_slo_miss
    ttft_strict, tpot_strict = policy.config.strictest_targets()
    if loose_request.requested_ttft_ms <= ttft_strict and loose_request.requested_tpot_ms <= tpot_strict:
        assert loose.predicted_cost_usd <= tight.predicted_cost_usd  # more pools to choose from


@settings(max_examples=100, deadline=None)
@given(loads=pool_loads, request=requests, seed=st.randoms())
def test_property_deterministic_and_order_independent(priors, loads, request, seed):
    pools = build_pools(priors, loads)
    assume(any(p.healthy and p.replicas > 0 for p in pools))
    first = LatencyCostPolicy(named_priors(priors, pools)).pick_pool(request, pools, 5.0)
    again = LatencyCostPolicy(named_priors(priors, pools)).pick_pool(request, pools, 5.0)
    assert first == again
    shuffled = list(pools)
    seed.shuffle(shuffled)
    other = LatencyCostPolicy(named_priors(priors, pools)).pick_pool(request, shuffled, 5.0)
    assert other.pool == first.pool and math.isclose(other.predicted_cost_usd,
                                                     first.predicted_cost_usd)


@settings(max_examples=100, deadline=None)
@given(constants=st.tuples(st.floats(0, 0.05), st.floats(0, 0.01), st.floats(1e-4, 0.1),
                           st.floats(0, 1e-6), st.floats(0, 1e-3), st.floats(0, 1e-8),
                           st.integers(0, 10**6), st.integers(1, 256)),
       in_flight=st.integers(0, 500), queued=st.integers(0, 500), replicas=st.integers(1, 8),
       prompt=st.integers(1, 10000), output=st.integers(1, 4000))
def test_property_roofline_is_finite_and_monotone_in_load(constants, in_flight, queued, replicas,
                                                          prompt, output):
    overhead, service, queue, step, batch = join_pool(constants, in_flight, queued, replicas,
                                                      prompt, output)
    cost = request_cost_usd(constants, 2.0, prompt, output)
    assert all(math.isfinite(x) and x >= 0 for x in (overhead, service, queue, step, cost))
    more = join_pool(constants, in_flight + replicas, queued + replicas, replicas, prompt, output)
    assert more[1] + more[2] >= service + queue and more[3] >= step
    assert more[0] == overhead  # the serving path's share does not grow with load


def test_a_cheap_pool_at_the_edge_of_the_targets_loses_to_one_with_headroom(priors):
    request = RequestFeatures(500, 200, tier="interactive")
    idle = LatencyCostPolicy(priors).pick_pool(request, [state("H100", priors)], 0.0)
    tpot = idle.predicted_tpot_ms  # the idle H100's TPOT, well inside 25 ms
    pools = [state("H100", priors), state("H200", priors)]
    every = every_pool(LatencyCostPolicy(priors), request, pools)
    assert every["H100"][2] < every["H200"][2]
    # targets the H100 meets with less than 20 % to spare, the H200 with more
    edge = replace(request, requested_tpot_ms=tpot / 0.9, requested_ttft_ms=10_000)
    assert every["H200"][1] <= 0.8 * edge.requested_tpot_ms  # the premise
    picked = LatencyCostPolicy(priors).pick_pool(edge, pools, 0.0)
    assert picked.pool == "H200" and picked.reason.endswith("with 20% to spare")
    # without room anywhere, the cheapest pool meeting the targets at all
    alone = LatencyCostPolicy(priors).pick_pool(edge, [state("H100", priors)], 0.0)
    assert alone.pool == "H100" and not alone.predicted_slo_miss
    flat = LatencyCostPolicy(priors, RoutingConfig.gpu_defaults().model_copy(
        update={"headroom": 1.0})).pick_pool(edge, pools, 0.0)
    assert flat.pool == "H100"


def test_a_cold_pool_takes_requests_that_can_wait_for_its_start_and_spills_the_rest(priors):
    policy = LatencyCostPolicy(priors)
    pools = [state("H100", priors), replace(state("L4", priors), cold_start_ms=90_000.0)]
    interactive = policy.pick_pool(RequestFeatures(500, 200, tier="interactive"), pools, 0.0)
    assert interactive.pool == "H100"
    assert "cold L4 passed over (~90 s to start)" in interactive.reason  # too slow even warm
    patient = RequestFeatures(500, 200, requested_ttft_ms=600_000, requested_tpot_ms=200, tier="batch")
    waits = policy.pick_pool(patient, pools, 0.0)
    assert waits.pool == "L4" and "L4 is cold: waits for its first replica (~90 s" in waits.reason
    assert waits.predicted_ttft_ms > 90_000
    hurried = replace(patient, requested_ttft_ms=30_000)
    spilled = policy.pick_pool(hurried, pools, 0.0)
    assert spilled.pool == "H100"
    assert "spilled from cold L4 (~90 s to start breaks TTFT<=30000ms)" in spilled.reason
    assert policy.pick_pool(hurried, [pools[0], state("L4", priors)], 0.0).pool == "L4"  # warm


def test_a_cold_pools_queue_is_bounded(priors):
    policy = LatencyCostPolicy(priors, RoutingConfig.gpu_defaults().model_copy(
        update={"max_queued_per_replica": 4}))
    patient = RequestFeatures(500, 200, requested_ttft_ms=600_000, requested_tpot_ms=200, tier="batch")
    cold = replace(state("L4", priors, queued=4), cold_start_ms=90_000.0)
    decision = policy.pick_pool(patient, [state("H100", priors), cold], 0.0)
    assert decision.pool == "H100" and "cold L4 passed over" in decision.reason

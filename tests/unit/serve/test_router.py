"""The ingress's routing state: pool states from live counts, decisions logged, spend and
latency fed back into the policy. Plain objects: no Serve, no engines."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from tandem.errors import UserError
from tandem.perf import ReplicaModel
from tandem.routing import LatencyCostPolicy, RequestFeatures, RoutingConfig, TierTargets
from tandem.routing.log import parse_jsonl
from tandem.routing.policy import LeastLoadedPolicy, RoundRobinPolicy
from tandem.routing.types import Decision
from tandem.serve import router as router_module
from tandem.serve.config import PoolConfig, ServeAppConfig, load_serve_config
from tandem.serve.router import PoolRouter, build_policy, pool_prior

REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO / "apps" / "serve.local.yaml"
SHORT = RequestFeatures(prompt_tokens=32, max_tokens=16, tier="interactive")


def route(pool, price, replicas=1):
    return {"pool": pool, "version": 1, "app": f"tandem-{pool}", "deployment": f"llm-{pool}",
            "gpu": "cpu", "price_per_hour": price, "replicas": replicas}


ROUTES = {"fast": route("fast", 0.40), "cheap": route("cheap", 0.10)}


@pytest.fixture
def config():
    return load_serve_config(LOCAL)


@pytest.fixture
def router(config, tmp_path):
    return PoolRouter(config, tmp_path / "routing" / "decisions.jsonl")


def by_name(states):
    return {state.name: state for state in states}


def candidate(decision, pool):
    return next(c for c in decision.candidates if c.pool == pool)


def test_requests_beyond_the_batch_limit_count_as_queued(router):
    router.in_flight["cheap"] = 6  # cheap batches 4 sequences per replica
    router.in_flight["fast"] = 20
    states = by_name(router.states(ROUTES))
    assert (states["cheap"].in_flight, states["cheap"].queued) == (4, 2)
    assert (states["fast"].in_flight, states["fast"].queued) == (20, 0)
    two_replicas = by_name(router.states({"cheap": route("cheap", 0.10, replicas=2)}))
    assert (two_replicas["cheap"].in_flight, two_replicas["cheap"].queued) == (6, 0)
    assert states["cheap"].price_per_hour == 0.10 and states["cheap"].gpu == "cpu"


def test_a_route_without_a_configured_pool_never_queues(router):
    router.in_flight["extra"] = 500
    state = by_name(router.states({**ROUTES, "extra": route("extra", 0.2)}))["extra"]
    assert (state.in_flight, state.queued, state.healthy) == (500, 0, True)


def test_a_failed_pool_is_skipped_until_recovered(router):
    assert all(state.healthy for state in router.states(ROUTES))
    router.failed("cheap")
    assert {s.name: s.healthy for s in router.states(ROUTES)} == {"fast": True, "cheap": False}
    decision = router.choose(SHORT, router.states(ROUTES), 0.0, "r1")
    assert decision.pool == "fast"
    router.recovered("cheap")
    assert all(state.healthy for state in router.states(ROUTES))


def test_an_answer_from_a_failed_pool_marks_it_healthy(router):
    router.failed("cheap")
    state = by_name(router.states(ROUTES))["fast"]
    router.finished(state, SHORT, 0.0, 0.0, 0, e2e_ms=100.0, ttft_ms=None, tpot_ms=None)
    assert not by_name(router.states(ROUTES))["cheap"].healthy  # another pool's answer
    cheap = by_name(router.states({"cheap": ROUTES["cheap"]}))["cheap"]
    router.finished(cheap, SHORT, 1.0, 0.0, 0, e2e_ms=100.0, ttft_ms=None, tpot_ms=None)
    assert by_name(router.states(ROUTES))["cheap"].healthy


def test_exclude_marks_the_pool_that_just_failed(router):
    states = by_name(router.states(ROUTES, exclude="fast"))
    assert not states["fast"].healthy and states["cheap"].healthy
    assert "fast" not in router.down  # a one-off, not a lasting mark


def test_when_every_pool_is_down_all_are_offered(router):
    router.failed("fast")
    router.failed("cheap")
    assert all(state.healthy for state in router.states(ROUTES))
    assert router.choose(SHORT, router.states(ROUTES), 0.0, "r1").pool in ROUTES
    retry = by_name(router.states(ROUTES, exclude="cheap"))  # still not the one that failed
    assert retry["fast"].healthy and not retry["cheap"].healthy
    single = router.states({"cheap": ROUTES["cheap"]}, exclude="cheap")
    assert single[0].healthy  # the only pool: try it again rather than refuse


def test_choose_records_the_decision(router):
    decision = router.choose(SHORT, router.states(ROUTES), 5.0, "req-1")
    assert router.log.decisions_by_pool[decision.pool] == 1
    [record] = router.log.records()
    assert record["request_id"] == "req-1" and record["pool"] == decision.pool
    assert record["time"] == 5.0 and record["request"]["tier"] == "interactive"
    assert [c["pool"] for c in record["candidates"]] == [c.pool for c in decision.candidates]
    assert "cheap" in {c["pool"] for c in record["candidates"]}  # the cheaper one: predicted


def test_write_decisions_appends_only_new_lines(router, tmp_path):
    path = tmp_path / "routing" / "decisions.jsonl"
    router.choose(SHORT, router.states(ROUTES), 1.0, "a")
    router.choose(SHORT, router.states(ROUTES), 2.0, "b")
    router.write_decisions(router.take_decisions())
    first = parse_jsonl(path.read_text())
    assert [r["request_id"] for r in first] == ["a", "b"]
    assert first[0]["reason"] and first[0]["predicted"]["ttft_ms"] > 0
    router.write_decisions(router.take_decisions())  # nothing new
    router.choose(SHORT, router.states(ROUTES), 3.0, "c")
    router.write_decisions(router.take_decisions())
    records = parse_jsonl(path.read_text())
    assert [r["request_id"] for r in records] == ["a", "b", "c"]
    assert records[:2] == first


def test_write_decisions_rotates_a_large_file(router, tmp_path, monkeypatch):
    path = tmp_path / "routing" / "decisions.jsonl"
    monkeypatch.setattr(router_module, "MAX_DECISIONS_FILE_BYTES", 10)
    router.choose(SHORT, router.states(ROUTES), 1.0, "old")
    router.write_decisions(router.take_decisions())
    router.choose(SHORT, router.states(ROUTES), 2.0, "new")
    router.write_decisions(router.take_decisions())
    assert [r["request_id"] for r in parse_jsonl(path.read_text())] == ["new"]
    rotated = path.with_name("decisions.jsonl.1")
    assert [r["request_id"] for r in parse_jsonl(rotated.read_text())] == ["old"]


def test_without_a_decisions_file_nothing_piles_up(config):
    router = PoolRouter(config, None)
    router.choose(SHORT, router.states(ROUTES), 1.0, "a")
    router.write_decisions(router.take_decisions())
    assert router.take_decisions() == []
    assert len(router.log) == 1


def budget_router(tmp_path, budget=1.0):
    # batch targets only `fast` meets, so the cap is what sends batch to `cheap`
    routing = RoutingConfig(tiers={
        "interactive": TierTargets(ttft_ms=250, tpot_ms=40),
        "standard": TierTargets(ttft_ms=1000, tpot_ms=150),
        "batch": TierTargets(ttft_ms=35, tpot_ms=8, budget_per_hour=budget),
    })
    config = load_serve_config(LOCAL, {"routing": routing.model_dump()})
    return PoolRouter(config, tmp_path / "decisions.jsonl")


def test_batch_tier_spills_to_the_cheapest_pool_over_its_budget(tmp_path):
    router = budget_router(tmp_path, budget=1.0)
    batch = RequestFeatures(prompt_tokens=32, max_tokens=16, tier="batch")
    assert router.choose(batch, router.states(ROUTES), 0.0, "b0").pool == "fast"
    fast = by_name(router.states(ROUTES))["fast"]
    for second in (1.0, 2.0):  # $0.02 within 60 s: $1.20/h
        router.finished(fast, batch, second, 0.01, 16, e2e_ms=120.0, ttft_ms=30.0, tpot_ms=6.0)
    spilled = router.choose(batch, router.states(ROUTES), 3.0, "b1")
    assert spilled.pool == "cheap" and spilled.predicted_slo_miss
    assert "budget" in spilled.reason
    interactive = router.choose(SHORT, router.states(ROUTES), 3.0, "i1")
    assert "budget" not in interactive.reason  # another tier's cap
    later = router.choose(batch, router.states(ROUTES), 62.5, "b2")  # spend left the window
    assert later.pool == "fast" and "budget" not in later.reason


def test_spend_under_the_budget_does_not_spill(tmp_path):
    router = budget_router(tmp_path, budget=1.0)
    batch = RequestFeatures(prompt_tokens=32, max_tokens=16, tier="batch")
    fast = by_name(router.states(ROUTES))["fast"]
    router.finished(fast, batch, 1.0, 0.01, 16, e2e_ms=120.0, ttft_ms=30.0, tpot_ms=6.0)
    assert router.choose(batch, router.states(ROUTES), 2.0, "b").pool == "fast"  # $0.60/h


def test_idle_interactive_request_goes_to_the_cheapest_pool_meeting_targets(router):
    states = by_name(router.states(ROUTES))
    decision = router.choose(SHORT, list(states.values()), 0.0, "r")
    assert decision.pool == "cheap" and not decision.predicted_slo_miss
    assert candidate(decision, "cheap").meets_slo
    # fast meets the targets too, but rents for more: the decision did not predict it
    fast = router.policy.latency.predict(states["fast"], SHORT, 0.0)
    assert fast.ttft_ms <= 250 and fast.tpot_ms <= 40
    assert [c.pool for c in decision.candidates] == ["cheap"]
    assert decision.reason.endswith("1 pool(s) renting more for it not predicted")
    fast_cost = router.price(Decision(pool="fast", reason="priced alone"), SHORT, 0.40)
    assert candidate(decision, "cheap").predicted_cost_usd < fast_cost
    assert decision.predicted_ttft_ms == pytest.approx(40.0)


def test_a_busy_cheap_pool_sends_interactive_requests_to_fast(router):
    router.in_flight["cheap"] = 40
    decision = router.choose(SHORT, router.states(ROUTES), 0.0, "r")
    assert decision.pool == "fast" and not decision.predicted_slo_miss
    assert not candidate(decision, "cheap").meets_slo


def test_streamed_observations_slow_a_pools_predictions(router):
    states = by_name(router.states(ROUTES))
    cheap, fast = states["cheap"], states["fast"]
    fast_before = router.policy.latency.predict(fast, SHORT, 0.0)
    for second in range(1, 6):  # cheap delivers 10x its prior
        router.finished(cheap, SHORT, float(second), 0.0, 16, e2e_ms=2000.0,
                        ttft_ms=400.0, tpot_ms=100.0)
    after = router.choose(SHORT, router.states(ROUTES), 5.0, "r1")
    assert candidate(after, "cheap").predicted_ttft_ms == pytest.approx(400.0, rel=0.05)
    assert candidate(after, "cheap").predicted_tpot_ms == pytest.approx(100.0, rel=0.05)
    assert candidate(after, "fast")[1:3] == fast_before  # fast's own predictions unchanged
    assert after.pool == "fast"  # cheap is now predicted to miss the interactive targets


def test_non_streamed_observations_learn_from_end_to_end_time(router):
    before = candidate(router.choose(SHORT, router.states(ROUTES), 0.0, "r0"), "cheap")
    predicted_e2e = before.predicted_ttft_ms + (SHORT.max_tokens - 1) * before.predicted_tpot_ms
    cheap = by_name(router.states(ROUTES))["cheap"]
    for second in range(1, 4):
        router.finished(cheap, SHORT, float(second), 0.0, 16, e2e_ms=10 * predicted_e2e,
                        ttft_ms=None, tpot_ms=None)
    after = router.choose(SHORT, router.states(ROUTES), 4.0, "r1")
    learned = candidate(after, "cheap")
    assert learned.predicted_ttft_ms == pytest.approx(10 * before.predicted_ttft_ms, rel=0.05)
    assert learned.predicted_tpot_ms == pytest.approx(10 * before.predicted_tpot_ms, rel=0.05)
    assert after.pool == "fast"


def test_learning_uses_the_tokens_actually_produced(router):
    before = candidate(router.choose(SHORT, router.states(ROUTES), 0.0, "r0"), "cheap")
    cheap = by_name(router.states(ROUTES))["cheap"]
    asked_for_more = RequestFeatures(prompt_tokens=32, max_tokens=500, tier="interactive")
    produced = 16  # the same e2e over 16 tokens, not 500: matches the prior exactly
    router.finished(cheap, asked_for_more, 1.0, 0.0, produced,
                    e2e_ms=before.predicted_ttft_ms + (produced - 1) * before.predicted_tpot_ms,
                    ttft_ms=None, tpot_ms=None)
    after = candidate(router.choose(SHORT, router.states(ROUTES), 1.0, "r1"), "cheap")
    assert after.predicted_ttft_ms == pytest.approx(before.predicted_ttft_ms)
    assert after.predicted_tpot_ms == pytest.approx(before.predicted_tpot_ms)


def _judge_cheap_slow(router, at: float) -> None:
    cheap = by_name(router.states(ROUTES))["cheap"]
    for second in range(5):  # 10x its prior while it was loaded
        router.finished(cheap, SHORT, at + second, 0.0, 16, e2e_ms=2000.0,
                        ttft_ms=400.0, tpot_ms=10.0)


def test_an_idle_pool_is_probed_once_it_goes_unobserved(router):
    _judge_cheap_slow(router, 0.0)
    after = router.routing.probe_after_s
    assert router.pools_to_probe(ROUTES, 4.0 + after - 1) == []  # evidence still fresh
    assert [s.name for s in router.pools_to_probe(ROUTES, 4.0 + after)] == ["cheap"]
    router.in_flight["cheap"] = 1  # a pool with requests in flight is being observed anyway
    assert router.pools_to_probe(ROUTES, 4.0 + after) == []


def test_a_fast_probe_answer_brings_interactive_traffic_back(router):
    _judge_cheap_slow(router, 0.0)
    now = 4.0 + router.routing.probe_after_s
    assert router.choose(SHORT, router.states(ROUTES), now, "r0").pool == "fast"
    probes = 0
    while router.choose(SHORT, router.states(ROUTES), now, "r").pool != "cheap" and probes < 20:
        (cheap,) = router.pools_to_probe(ROUTES, now)
        router.probed(cheap, SHORT, now, ttft_ms=40.0)  # its prior, idle
        probes += 1
        now += router.routing.probe_after_s
    assert 0 < probes <= 3, probes


def test_probing_is_off_when_configured_or_without_a_latency_model(config, tmp_path):
    routing = config.routing_config().model_copy(update={"probe_after_s": None})
    off = PoolRouter(config.model_copy(update={"routing": routing}), None)
    _judge_cheap_slow(off, 0.0)
    assert off.pools_to_probe(ROUTES, 1e6) == []
    rr = PoolRouter(config.model_copy(update={"routing_policy": "round-robin"}), None)
    assert rr.pools_to_probe(ROUTES, 1e6) == []


def test_build_policy_follows_routing_policy(config):
    assert isinstance(build_policy(load_serve_config(LOCAL, {"routing_policy": "round-robin"})),
                      RoundRobinPolicy)
    assert isinstance(build_policy(load_serve_config(LOCAL, {"routing_policy": "least-loaded"})),
                      LeastLoadedPolicy)
    policy = build_policy(config)
    assert isinstance(policy, LatencyCostPolicy)
    assert policy.config == config.routing_config() == RoutingConfig.local_cpu_defaults()
    assert set(policy.latency.priors) == {"fast", "cheap"}
    assert policy.latency.priors["cheap"].max_num_seqs == 4


def test_a_baseline_policy_routes_logs_and_takes_feedback(tmp_path):
    router = PoolRouter(load_serve_config(LOCAL, {"routing_policy": "round-robin"}),
                        tmp_path / "decisions.jsonl")
    picks = [router.choose(SHORT, router.states(ROUTES), float(i), f"r{i}").pool
             for i in range(4)]
    assert sorted(picks) == ["cheap", "cheap", "fast", "fast"]
    assert router.log.decisions_by_pool == {"fast": 2, "cheap": 2}
    router.failed("fast")
    state = by_name(router.states(ROUTES))["fast"]
    router.finished(state, SHORT, 5.0, 0.01, 16, e2e_ms=100.0, ttft_ms=10.0, tpot_ms=5.0)
    assert "fast" not in router.down


def test_every_decision_carries_the_targets_it_is_judged_against(config):
    """The request's own targets, else its tier's, whichever policy routed it: the ingress,
    both logs and the SLO outcome read them from the decision."""
    interactive = config.routing_config().targets("interactive")
    asked = RequestFeatures(prompt_tokens=32, max_tokens=16, tier="interactive",
                            requested_ttft_ms=900.0)
    for policy in ("tandem", "round-robin", "least-loaded"):
        router = PoolRouter(config.model_copy(update={"routing_policy": policy}), None)
        decision = router.choose(SHORT, router.states(ROUTES), 0.0, "r0")
        assert (decision.ttft_target_ms, decision.tpot_target_ms) == (
            interactive.ttft_ms, interactive.tpot_ms), policy
        decision = router.choose(asked, router.states(ROUTES), 0.0, "r1")
        assert (decision.ttft_target_ms, decision.tpot_target_ms) == (
            900.0, interactive.tpot_ms), policy
        logged = router.take_decisions()[-1]["request"]
        assert (logged["requested_ttft_ms"], logged["requested_tpot_ms"]) == (900.0, None)
        assert (logged["ttft_target_ms"], logged["tpot_target_ms"]) == (900.0,
                                                                        interactive.tpot_ms)


def test_pool_prior_of_a_cpu_pool_is_its_configured_prior(config):
    prior = pool_prior(config.pools["fast"], None)
    assert prior.request_overhead + prior.prefill_time(32) == pytest.approx(0.030)
    assert prior.request_overhead == pytest.approx(config.pools["fast"].overhead_ms / 1e3)
    assert prior.decode_step(1, 0) == pytest.approx(0.006)
    assert prior.max_num_seqs == 32 and prior.context_length == 128
    assert prior.price_per_hour == 0.40


def test_pool_prior_of_a_gpu_pool_comes_from_the_catalog():
    pool = PoolConfig(gpu="H100", price_per_hour=2.1, engine={"max_num_seqs": 64})
    prior = pool_prior(pool, "llama-3.1-8b")
    assert isinstance(prior, ReplicaModel)
    assert prior.gpu == "H100" and prior.model == "llama-3.1-8b"
    assert prior.precision == "bf16"
    fp8 = pool_prior(PoolConfig(gpu="H100", price_per_hour=2.1,
                                engine={"quantization": "fp8"}), "llama-3.1-8b")
    assert fp8.precision == "fp8"
    assert fp8.mem_fixed < prior.mem_fixed  # half the weight bytes to stream per step


def test_gpu_pools_with_a_model_profile_need_no_prior():
    config = ServeAppConfig.model_validate({
        "model_profile": "llama-3.1-8b",
        "pools": {"h100": {"gpu": "H100", "price_per_hour": 2.1}}})
    policy = build_policy(config)
    assert policy.latency.priors["h100"].gpu == "H100"
    assert policy.config == RoutingConfig.gpu_defaults()


def test_tandem_policy_rejects_a_cpu_pool_without_prior():
    pools = {"solo": {"gpu": "cpu", "price_per_hour": 0.1,
                      "engine": {"kv_cache_memory_bytes": 1 << 27}}}
    with pytest.raises(ValidationError, match="pool 'solo' needs a latency `prior`"):
        ServeAppConfig.model_validate({"pools": pools})
    with pytest.raises(ValidationError, match="'solo'"):  # a model profile does not help a cpu pool
        ServeAppConfig.model_validate({"pools": pools, "model_profile": "llama-3.1-8b"})
    ServeAppConfig.model_validate({"pools": pools, "routing_policy": "least-loaded"})


def test_tandem_policy_rejects_a_gpu_pool_without_prior_or_profile():
    with pytest.raises(ValidationError, match="pool 'h100'"):
        ServeAppConfig.model_validate({"pools": {"h100": {"gpu": "H100", "price_per_hour": 2.1}}})


def test_a_serve_yaml_missing_a_prior_is_a_user_error_naming_the_pool(tmp_path):
    text = LOCAL.read_text().replace("prior: {ttft_ms: 40, tpot_ms: 10}", "")
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="cheap"):
        load_serve_config(path)


def test_spend_history_stays_bounded_without_a_cost_policy():
    router = PoolRouter(load_serve_config(LOCAL, {"routing_policy": "least-loaded"}), None)
    state = router.states({"fast": {"gpu": "cpu", "price_per_hour": 0.4, "replicas": 1}})[0]
    for second in range(1000):
        router.finished(state, RequestFeatures(32, 16), float(second), 0.001, 16,
                        e2e_ms=100.0, ttft_ms=10.0, tpot_ms=5.0)
    assert sum(len(spent) for spent in router._spent.values()) == 0


def test_gpu_prior_batches_as_many_sequences_as_the_engine():
    pool = PoolConfig(gpu="L4", price_per_hour=0.684,
                      engine={"max_num_seqs": 64, "max_model_len": 4096})
    prior = pool_prior(pool, "llama-3.1-8b")
    assert prior.max_num_seqs == 64
    assert prior.context_length == 4096


def test_a_canary_takes_its_share_of_requests():
    from tandem.serve.routes import canary_or_champion

    canary = {"version": 2, "share": 0.25, "pools": {"cheap": route("cheap", 0.10)}}
    entry = {"version": 1, "pools": ROUTES, "canary": canary}
    draws = [i / 1000 for i in range(1000)]
    assert sum(canary_or_champion(entry, d) is canary for d in draws) == 250
    assert canary_or_champion(entry, 0.5) is entry
    champion_only = {"version": 1, "pools": ROUTES}
    assert canary_or_champion(champion_only, 0.0) is champion_only


def test_pool_states_carry_the_output_tokens_owed_by_requests_in_flight():
    router = PoolRouter(load_serve_config(LOCAL), None)
    routes = {"cheap": {"gpu": "cpu", "price_per_hour": 0.1, "replicas": 1}}
    for max_tokens in (64, 64, 16):
        router.dispatched("cheap", RequestFeatures(8, max_tokens), "cheap-app")
    [state] = router.states(routes)
    assert (state.in_flight + state.queued, state.owed_output_tokens) == (3, 144)
    assert state.mean_owed_output == 48.0
    assert router.in_flight_apps == {"cheap-app": 3}  # what a drain of that app waits for
    router.released("cheap", RequestFeatures(8, 64), "cheap-app")
    [state] = router.states(routes)
    assert (state.in_flight, state.owed_output_tokens) == (2, 80)
    assert router.in_flight_apps == {"cheap-app": 2}


def test_gpu_prior_spans_the_pools_tensor_parallel_gpus():
    one = pool_prior(PoolConfig(gpu="H100", engine={"quantization": "fp8"}), "llama-3.1-70b")
    two = pool_prior(PoolConfig(gpu="H100", engine={"quantization": "fp8", "tensor_parallel_size": 2}),
                     "llama-3.1-70b")
    assert (one.tp, two.tp) == (1, 2)
    assert two.kv_capacity > one.kv_capacity and two.mem_fixed < one.mem_fixed
    assert two.price_per_hour == pytest.approx(2 * one.price_per_hour)


def test_load_is_judged_per_running_replica_as_serve_reports_them():
    router = PoolRouter(load_serve_config(LOCAL), None)
    routes = {"cheap": {"gpu": "cpu", "price_per_hour": 0.1, "replicas": 1}}
    slots = router.config.pools["cheap"].engine.max_num_seqs
    for _ in range(slots + 2):
        router.dispatched("cheap", RequestFeatures(8, 16), "cheap-app")
    [one] = router.states(routes)
    assert (one.replicas, one.queued) == (1, 2)
    router.scaled("cheap", 2, 0.0)  # autoscaling started a second replica
    [two] = router.states(routes)
    assert (two.replicas, two.queued, two.load_per_replica) == (2, 0, (slots + 2) / 2)
    router.scaled("cheap", 0, 0.0)  # none running: the configured count stands (the pool is down)
    assert router.states(routes)[0].replicas == 1


def test_the_other_ingress_replicas_load_and_spend_are_added_to_this_ones(tmp_path):
    router = budget_router(tmp_path, budget=1.0)
    router.dispatched("cheap", SHORT, "tandem-cheap")
    router.others = {"in_flight": {"cheap": 5}, "owed_output_tokens": {"cheap": 80},
                     "spend_per_hour": {"batch": 1.2}}
    cheap = by_name(router.states(ROUTES))["cheap"]
    assert (cheap.in_flight, cheap.queued, cheap.owed_output_tokens) == (4, 2, 96)
    batch = RequestFeatures(prompt_tokens=32, max_tokens=16, tier="batch")
    spilled = router.choose(batch, router.states(ROUTES), 1.0, "b")  # the others spent the budget
    assert "budget" in spilled.reason
    assert router.load_report(1.0) == {"in_flight": {"cheap": 1},
                                       "owed_output_tokens": {"cheap": 16},
                                       "spend_per_hour": {}}


def test_a_pool_scaled_to_zero_is_cold_until_its_first_replica_runs_and_measures_its_start():
    router = PoolRouter(load_serve_config(LOCAL), None)
    routes = {"fast": route("fast", 0.40), "cheap": {**route("cheap", 0.10), "cold_start_s": 60.0}}
    router.scaled("cheap", 0, 0.0)
    router.scaled("fast", 0, 0.0)  # a pool that cannot scale to zero is not cold (it is down)
    states = by_name(router.states(routes, now=0.0))
    assert states["cheap"].cold_start_ms == 60_000.0 and states["fast"].cold_start_ms == 0.0
    patient = RequestFeatures(prompt_tokens=8, max_tokens=16, requested_ttft_ms=600_000,
                              requested_tpot_ms=1000, tier="batch")
    decision = router.choose(patient, router.states(routes, now=10.0), 10.0, "p")
    assert decision.pool == "cheap" and "cheap is cold" in decision.reason
    router.dispatched("cheap", patient, "tandem-cheap")
    waiting = by_name(router.states(routes, now=30.0))["cheap"]
    assert waiting.cold_start_ms == 40_000.0  # 20 s of its 60 s start are behind it
    assert (waiting.replicas, waiting.in_flight, waiting.queued) == (1, 0, 1)
    assert by_name(router.states(routes, now=200.0))["cheap"].cold_start_ms == 6_000.0  # late
    router.scaled("cheap", 1, 55.0)  # the first replica runs: 45 s measured
    assert by_name(router.states(routes, now=55.0))["cheap"].cold_start_ms == 0.0
    router.scaled("cheap", 0, 100.0)  # scaled back to zero: cold again, with the measured start
    assert by_name(router.states(routes, now=100.0))["cheap"].cold_start_ms == 45_000.0
    for state in router.states(routes, now=100.0):
        router.probed(state, SHORT, 100.0, ttft_ms=50.0)
    assert [s.name for s in router.pools_to_probe(routes, 1e6)] == ["fast"]  # a probe would wake it


def test_a_request_that_waited_for_a_cold_start_teaches_only_its_tpot():
    router = PoolRouter(load_serve_config(LOCAL), None)
    routes = {"cheap": {**route("cheap", 0.10), "cold_start_s": 60.0}}
    router.scaled("cheap", 0, 0.0)
    [cold] = router.states(routes, now=0.0)
    router.finished(cold, SHORT, 1.0, 0.0, 16, e2e_ms=61_000.0, ttft_ms=60_500.0, tpot_ms=30.0)
    overhead, service, queue, tpot = router.policy.latency.corrected("cheap", 1.0)
    prior_overhead = router.policy.latency.corrections["cheap"].prior_overhead
    assert (overhead, service, queue) == (prior_overhead, 1.0, 1.0)  # TTFT terms untouched
    assert tpot != 1.0  # TPOT learned


def _queued_cheap(router):
    """`cheap` with its 4 batch slots taken and 4 more waiting: waiting dominates a
    prediction there."""
    router.in_flight["cheap"] = 8
    return by_name(router.states(ROUTES))["cheap"]


def test_a_first_token_teaches_the_ttft_before_the_request_finishes(router):
    cheap = by_name(router.states(ROUTES))["cheap"]
    router.awaiting_first_token("r0", cheap, SHORT, 0.0)
    before = router.policy.latency.predict(cheap, SHORT, 1.0).ttft_ms
    assert router.first_token("r0", "cheap", 1.0, ttft_ms=5 * before)
    assert router.policy.latency.predict(cheap, SHORT, 1.0).ttft_ms > 1.5 * before
    learned = len(router.policy.latency.samples["cheap"])  # one per TTFT observed
    router.finished(cheap, SHORT, 2.0, 0.0, 16, e2e_ms=3000.0, ttft_ms=5 * before,
                    tpot_ms=40.0, ttft_learned=True)
    assert len(router.policy.latency.samples["cheap"]) == learned  # not twice
    assert not router.first_token("r0", "cheap", 3.0, ttft_ms=1.0)  # answered once


def test_a_request_waiting_past_its_prediction_warns_the_next_decision(router):
    cheap = _queued_cheap(router)
    router.awaiting_first_token("slow", cheap, SHORT, 0.0)
    predicted = router.policy.latency.predict(cheap, SHORT, 0.0).ttft_ms
    router.choose(SHORT, router.states(ROUTES), 30.0, "next")  # 30 s on, still no token
    assert router.policy.latency.predict(cheap, SHORT, 30.0).ttft_ms > 1.5 * predicted


def test_a_settled_request_no_longer_counts_as_waiting(router):
    cheap = _queued_cheap(router)
    router.awaiting_first_token("failed", cheap, SHORT, 0.0)
    router.settled("failed", "cheap")
    predicted = router.policy.latency.predict(cheap, SHORT, 0.0).ttft_ms
    router.choose(SHORT, router.states(ROUTES), 30.0, "next")
    assert router.policy.latency.predict(cheap, SHORT, 30.0).ttft_ms == pytest.approx(predicted)

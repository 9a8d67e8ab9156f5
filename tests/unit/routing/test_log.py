import json

import pytest
from tandem.errors import UserError
from tandem.routing.config import RoutingConfig
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.log import DecisionLog, decision_record, format_explain, parse_jsonl
from tandem.routing.types import PoolState, RequestFeatures


def decide(priors, tier="interactive", prompt=300):
    pools = [PoolState(name=g, gpu=g, healthy=True, replicas=1, in_flight=0, queued=0,
                       price_per_hour=priors[g].price_per_hour) for g in priors]
    request = RequestFeatures(prompt, 50, tier=tier, requested_ttft_ms=200.0)
    return request, LatencyCostPolicy(priors).pick_pool(request, pools, 0.0)


def test_ring_is_bounded_and_counts(priors):
    log = DecisionLog(capacity=3)
    for index in range(5):
        request, decision = decide(priors, prompt=100 + index)
        log.record(1_700_000_000.0 + index, request, decision, request_id=f"r{index}")
    assert len(log) == 3
    records = log.records()
    assert [r["request_id"] for r in records] == ["r2", "r3", "r4"]
    assert [r["request_id"] for r in log.records(last=1)] == ["r4"]
    assert sum(log.decisions_by_pool.values()) == 5


def test_misses_are_counted_by_tier(priors):
    log = DecisionLog()
    request = RequestFeatures(9000, 50, requested_ttft_ms=1.0, requested_tpot_ms=1.0, tier="batch")
    pools = [PoolState(name="L4", gpu="L4", healthy=True, replicas=1, in_flight=0, queued=0,
                       price_per_hour=0.7)]
    decision = LatencyCostPolicy(priors).pick_pool(request, pools, 0.0)
    log.record(0.0, request, decision)
    assert log.predicted_misses_by_tier == {"batch": 1}


def test_jsonl_round_trip_and_explain(priors):
    log = DecisionLog()
    request, decision = decide(priors)
    log.record(1_700_000_000.5, request, decision, request_id="req-1")
    text = log.to_jsonl()
    assert text.endswith("\n") and len(text.splitlines()) == 1
    records = parse_jsonl(text)
    assert records[0]["pool"] == decision.pool
    assert [c["pool"] for c in records[0]["candidates"]] == [c.pool for c in decision.candidates]
    assert json.loads(text)["predicted"]["cost_usd"] == pytest.approx(decision.predicted_cost_usd)
    shown = format_explain(records)
    assert "req-1" in shown and "tier=interactive" in shown and "ttft<=200ms" in shown
    assert f"-> {decision.pool} (ok)" in shown
    starred = [line for line in shown.splitlines() if line.strip().startswith("*")]
    assert len(starred) == 1 and decision.pool in starred[0]
    assert all(candidate.pool in shown for candidate in decision.candidates)


def test_parse_jsonl_rejects_garbage():
    with pytest.raises(UserError, match="line 2"):
        parse_jsonl('{"pool": "a"}\nnot json\n')
    with pytest.raises(UserError, match="not a routing decision"):
        parse_jsonl('[1, 2]\n')


def test_a_line_keeps_the_asked_targets_apart_from_those_routed_against(priors):
    request, decision = decide(priors)  # asks for TTFT <= 200 ms, leaves TPOT to its tier
    line = decision_record(1_700_000_000.0, request, decision, "req-1")["request"]
    tier_tpot = RoutingConfig.gpu_defaults().targets("interactive").tpot_ms
    assert (line["requested_ttft_ms"], line["requested_tpot_ms"]) == (200.0, None)
    assert (line["ttft_target_ms"], line["tpot_target_ms"]) == (200.0, tier_tpot) == (
        decision.ttft_target_ms, decision.tpot_target_ms)
    records = parse_jsonl(json.dumps(decision_record(0.0, request, decision)) + "\n")
    assert f"ttft<=200ms tpot<={tier_tpot:g}ms" in format_explain(records)


def test_explain_reads_lines_written_before_decisions_carried_their_targets():
    """Then `ttft_target_ms` held the raw header (null when the tier decided) and there was
    no `requested_*`: shown as it was."""
    old = {"time": 1_700_000_000.0, "request_id": "req-old", "pool": "H100", "model": None,
           "reason": "cheapest", "predicted_slo_miss": False,
           "request": {"prompt_tokens": 300, "max_tokens": 50, "tier": "interactive",
                       "ttft_target_ms": 200.0, "tpot_target_ms": None, "max_cost_usd": None},
           "predicted": {"ttft_ms": 40.0, "tpot_ms": 9.0, "cost_usd": 1e-5},
           "candidates": [{"pool": "H100", "ttft_ms": 40.0, "tpot_ms": 9.0, "cost_usd": 1e-5,
                           "meets_slo": True, "within_cost": True}]}
    shown = format_explain(parse_jsonl(json.dumps(old) + "\n"))
    assert "req-old" in shown and "ttft<=200ms" in shown and "tpot<=" not in shown
    bad = dict(old, request=dict(old["request"], requested_ttft_ms="fast"))
    with pytest.raises(UserError, match="line 1: request.requested_ttft_ms is 'fast', not a"):
        parse_jsonl(json.dumps(bad) + "\n")

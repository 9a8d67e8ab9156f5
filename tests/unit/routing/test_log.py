import json

import pytest
from tandem.errors import UserError
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.log import DecisionLog, format_explain, parse_jsonl
from tandem.routing.types import PoolState, RequestFeatures


def decide(priors, tier="interactive", prompt=300):
    pools = [PoolState(name=g, gpu=g, healthy=True, replicas=1, in_flight=0, queued=0,
                       price_per_hour=priors[g].price_per_hour) for g in priors]
    request = RequestFeatures(prompt, 50, tier=tier, ttft_target_ms=200.0)
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
    request = RequestFeatures(9000, 50, ttft_target_ms=1.0, tpot_target_ms=1.0, tier="batch")
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

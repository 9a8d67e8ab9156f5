import pytest
from tandem.errors import UserError
from tandem.routing.hints import InvalidRoutingHint, RoutingHints, parse_routing_hints


def test_valid_hints_parse_case_insensitively():
    hints = parse_routing_hints({"X-Tandem-TTFT-ms": " 250 ", "x-tandem-tpot-ms": "1.5e1",
                                 "X-TANDEM-TIER": "Interactive", "x-tandem-max-cost": "0.002",
                                 "content-type": "application/json"})
    assert hints == RoutingHints(requested_ttft_ms=250.0, requested_tpot_ms=15.0,
                                 tier="interactive", max_cost_usd=0.002)
    features = hints.features(prompt_tokens=10, max_tokens=5)
    assert (features.tier, features.requested_ttft_ms, features.max_cost_usd) == (
        "interactive", 250.0, 0.002)


def test_a_quality_floor_in_0_1_is_taken_and_the_tier_floor_fills_in_without_it():
    from tandem.routing.config import RoutingConfig, TierTargets

    assert parse_routing_hints({"X-Tandem-Min-Quality": "0"}).min_quality == 0.0
    features = parse_routing_hints({"x-tandem-min-quality": " 0.85"}).features(10, 5)
    assert features.min_quality == 0.85
    config = RoutingConfig.local_cpu_defaults()
    tiers = dict(config.tiers, batch=TierTargets(ttft_ms=1, tpot_ms=1, min_quality=0.6))
    config = config.model_copy(update={"tiers": tiers})
    assert config.quality_floor(features) == 0.85
    assert config.quality_floor(RoutingHints(tier="batch").features(10, 5)) == 0.6
    assert config.quality_floor(RoutingHints(tier="standard").features(10, 5)) is None


def test_absent_hints_leave_the_choice_to_defaults():
    hints = parse_routing_hints({"authorization": "Bearer x"})
    assert hints == RoutingHints()
    assert hints.features(10, 5, default_tier="batch").tier == "batch"


@pytest.mark.parametrize("header, value", [
    ("x-tandem-ttft-ms", "fast"), ("x-tandem-ttft-ms", ""), ("x-tandem-ttft-ms", "-5"),
    ("x-tandem-ttft-ms", "0"), ("x-tandem-tpot-ms", "nan"), ("x-tandem-tpot-ms", "inf"),
    ("x-tandem-tpot-ms", "1e999"), ("x-tandem-max-cost", "0x10"), ("x-tandem-max-cost", "1_000"),
    ("x-tandem-max-cost", "-0.01"), ("x-tandem-tier", "premium"), ("x-tandem-tier", ""),
    ("x-tandem-min-quality", "1.5"), ("x-tandem-min-quality", "-0.1"),
    ("x-tandem-min-quality", "high"), ("x-tandem-min-quality", "nan"),
])
def test_malformed_hints_raise_a_user_error_naming_the_header(header, value):
    with pytest.raises(InvalidRoutingHint) as caught:
        parse_routing_hints({header.upper(): value})
    assert isinstance(caught.value, UserError)
    assert caught.value.header == header
    assert str(caught.value).startswith(f"{header}:")
    assert repr(value) in str(caught.value)

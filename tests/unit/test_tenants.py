"""What one tenant may move: the bound on ratings and corrections, over generated feedback
streams (one tenant flooding among them), at each place feedback becomes evidence."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.rollout.quality import rated_answers
from tandem.routing.models import LiveQuality
from tandem.telemetry.window import Rating, ratings
from tandem.tenants import bounded_by_tenant
from tandem.triggers.retrain_data import build_retrain_rows

from tests.unit.triggers.tables import feedback, feedback_table, request, requests_table

TENANTS = ("alice", "bob", "carol", "mallory")

# A stream of (tenant, tier, right): a few honest tenants and, often, one flooding.
streams = st.lists(st.tuples(st.sampled_from(TENANTS), st.sampled_from(("standard", "batch")),
                             st.booleans()), max_size=60).flatmap(
    lambda honest: st.integers(0, 400).map(
        lambda flood: honest + [("mallory", "standard", False)] * flood))


def shares(tenants) -> Counter:
    return Counter(tenants)


def holds_the_bound(kept: list, everything: list) -> None:
    """No tenant over half of what was kept once two tenants are in it; a lone tenant
    keeps everything; nothing but the largest tenant's oldest items is dropped."""
    counts = shares(kept)
    if len(shares(everything)) >= 2:
        assert max(counts.values()) * 2 <= len(kept)
        assert len(shares(kept)) == len(shares(everything))
    else:
        assert kept == everything


@given(streams)
@settings(max_examples=200, deadline=None)
def test_no_tenant_is_over_half_of_the_evidence(stream):
    tenants = [tenant for tenant, _, _ in stream]
    kept = bounded_by_tenant(stream, lambda item: item[0])
    holds_the_bound([tenant for tenant, _, _ in kept], tenants)
    dropped = Counter(stream) - Counter(kept)
    largest = shares(tenants).most_common(1)[0][0] if tenants else None
    assert {tenant for tenant, _, _ in dropped.elements()} <= {largest}


def rated_tables(stream):
    rows, posts = [], []
    for index, (tenant, tier, right) in enumerate(stream):
        rows.append(request(f"r{index}", 1000 - index, tier=tier, tenant=tenant))
        posts.append(feedback(f"r{index}", 500 - index, 1.0 if right else -1.0, tenant=tenant))
    return requests_table(*rows), feedback_table(*posts)


@given(streams)
@settings(max_examples=50, deadline=None)
def test_a_versions_quality_per_tier_stands_on_at_most_half_of_one_tenant(stream):
    requests, posted = rated_tables(stream)
    counts = rated_answers(requests, posted, model="tandem-tiny", version=3, scale="-1..1")
    for tier in ("standard", "batch"):
        everything = [tenant for tenant, of_tier, _ in stream if of_tier == tier]
        kept = bounded_by_tenant(everything, lambda tenant: tenant)
        holds_the_bound(kept, everything)
        assert counts.get(tier, (0, 0))[1] == len(kept)


@given(streams)
@settings(max_examples=100, deadline=None)
def test_the_routers_live_quality_stands_on_at_most_half_of_one_tenant(stream):
    live = LiveQuality(window=50, min_rated=1)
    for tenant, _, right in stream:
        live.rate("student", 1, right, tenant)
    quality, rated = live.of("student", 1)
    recent = Counter()
    last = []  # each tenant's last 50, in order
    for tenant, _, right in reversed(stream):
        if recent[tenant] < 50:
            recent[tenant] += 1
            last.append((tenant, right))
    last.reverse()
    kept = bounded_by_tenant(last, lambda item: item[0])
    holds_the_bound([tenant for tenant, _ in kept], [tenant for tenant, _ in last])
    assert rated == len(kept)
    if kept:
        assert quality == sum(right for _, right in kept) / len(kept)


def test_a_flood_of_ratings_does_not_push_a_student_out():
    """Mallory's 1,000 'wrong' ratings weigh as much as the 20 others gave, no more."""
    live = LiveQuality(window=50, min_rated=10)
    for _ in range(20):
        live.rate("student", 1, True, "alice")
    for _ in range(1000):
        live.rate("student", 1, False, "mallory")
    assert live.of("student", 1) == (0.5, 40)
    lone = LiveQuality(window=50, min_rated=10)
    for _ in range(30):
        lone.rate("student", 1, False, "alice")
    assert lone.of("student", 1) == (0.0, 30)  # one tenant: not bounded


@given(st.lists(st.sampled_from(TENANTS[:3]), max_size=30), st.integers(0, 300))
@settings(max_examples=50, deadline=None)
def test_one_tenants_corrections_are_at_most_half_of_a_retraining_set(honest, flood):
    correctors = honest + ["mallory"] * flood
    rows = [request(f"r{index}", 1000 - index, tenant=tenant, prompt=f"translate: w{index} =>")
            for index, tenant in enumerate(correctors)]
    posts = [feedback(f"r{index}", 500 - index, -1.0, f"fix {index}", tenant=tenant)
             for index, tenant in enumerate(correctors)]
    requests, posted = requests_table(*rows), feedback_table(*posts)
    built = build_retrain_rows(posted, requests, [], sample=0, seed=1)
    by_prompt = {rating.prompt.removeprefix("translate: ").removesuffix(" =>"): rating.tenant
                 for rating in ratings(posted, requests)}
    tenants = [by_prompt[row["prompt"].split(" =>")[0].removeprefix("translate: ")]
               for row in built]
    holds_the_bound(tenants, correctors)


def test_ratings_carry_the_tenant_that_posted_them():
    requests = requests_table(request("r1", 10, tenant="alice"))
    posted = feedback_table(feedback("r1", 5, 1.0, tenant="alice"))
    assert ratings(posted, requests) == [Rating("r1", ratings(posted, requests)[0].time, 1.0,
                                                None, "tandem-tiny", 3, "translate: r1 =>",
                                                "alice")]

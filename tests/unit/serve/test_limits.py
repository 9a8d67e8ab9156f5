"""Per-key token buckets: a burst goes through, then requests wait for the refill."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tandem.serve.limits import RateLimiter


def test_a_burst_passes_then_the_key_waits_for_its_next_token():
    limiter = RateLimiter(requests_per_s=2.0, burst=3)
    assert [limiter.retry_after("a", 0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("a", 0.0) == 1  # half a second to the next token, rounded up
    assert limiter.retry_after("b", 0.0) == 0  # another key has its own bucket
    assert limiter.retry_after("a", 0.6) == 0


def test_a_key_with_its_own_limit_uses_it():
    limiter = RateLimiter(requests_per_s=100.0, burst=100)
    assert limiter.retry_after("batch", 0.0, requests_per_s=0.1, burst=1) == 0
    assert limiter.retry_after("batch", 0.0, requests_per_s=0.1, burst=1) == 10


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
       st.floats(min_value=0.5, max_value=50), st.integers(min_value=1, max_value=20))
def test_never_more_than_burst_plus_refill(gaps, rate, burst):
    limiter = RateLimiter(rate, burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.retry_after("k", now) == 0
    assert allowed <= burst + rate * now + 1e-9


def test_admissions_are_reported_once_and_a_failed_report_goes_out_again():
    limiter = RateLimiter(requests_per_s=1.0, burst=5)
    for _ in range(3):
        limiter.retry_after("a", 0.0)
    limiter.retry_after("b", 0.0, requests_per_s=0.5, burst=2)
    report = limiter.report()
    assert report == {"a": (3, 1.0, 5), "b": (1, 0.5, 2)}
    assert limiter.report() == {}
    limiter.unreport(report)
    assert limiter.report() == report


def test_other_replicas_admissions_come_off_the_buckets_and_a_new_key_starts_from_the_level():
    limiter = RateLimiter(requests_per_s=0.5, burst=3)
    assert limiter.retry_after("a", 0.0) == 0
    limiter.report()
    limiter.apply({"a": (0.0, 0.5, 3), "new": (0.0, 0.5, 3)}, {"a": 1}, now=0.2)
    assert limiter.retry_after("a", 0.2) == 0  # 3 - 1 own - 1 of another replica: one left
    assert limiter.retry_after("a", 0.2) == 2
    assert limiter.retry_after("new", 0.2) == 2  # a key first seen in the view starts from it


def test_one_replica_synced_alone_keeps_its_exact_refill():
    """The view's own buckets take admissions late (at the sync); a replica alone must not
    lose the refill in between, so it never takes the view's level for a key it holds."""
    limiter = RateLimiter(requests_per_s=0.5, burst=3)
    for _ in range(3):
        assert limiter.retry_after("a", 0.0) == 0
    limiter.report()
    limiter.apply({"a": (0.0, 0.5, 3)}, {}, now=0.45)
    assert limiter.retry_after("a", 2.0) == 0

"""The deployment's shared view: one rate-limit bucket per key and the other replicas' load,
from what each ingress replica reports. The actor body as a plain object, with a clock the
test moves; the bound on what two replicas admit together is checked against the replicas'
own limiters synced through it."""

from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.serve.limits import RateLimiter
from tandem.serve.shared_view import LIVE_S, SharedView


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_admissions_from_every_replica_come_off_one_bucket():
    clock = Clock()
    view = SharedView(clock)
    view.sync("a", {"k": (2, 0.5, 3)}, {})
    answer = view.sync("b", {"k": (1, 0.5, 3)}, {})
    assert answer["limits"]["k"] == (0.0, 0.5, 3)
    clock.now = 2.0
    assert view.sync("a", {}, {})["limits"]["k"] == (1.0, 0.5, 3)  # refilled at 0.5/s


def test_each_replica_learns_what_the_others_admitted_since_its_last_sync():
    view = SharedView(Clock())
    assert view.sync("a", {"k": (1, 0.5, 3)}, {})["admitted_by_others"] == {}  # first sync
    view.sync("b", {"k": (2, 0.5, 3)}, {})
    view.sync("b", {"k": (1, 0.5, 3), "j": (4, 1.0, 9)}, {})
    assert view.sync("a", {"k": (1, 0.5, 3)}, {})["admitted_by_others"] == {"k": 3, "j": 4}
    assert view.sync("a", {}, {})["admitted_by_others"] == {}


def test_an_overshoot_is_owed_up_to_one_burst():
    view = SharedView(Clock())
    assert view.sync("a", {"k": (10, 0.5, 3)}, {})["limits"]["k"][0] == -3


def test_each_replica_sees_the_others_load_and_not_its_own():
    clock = Clock()
    view = SharedView(clock)
    view.sync("a", {}, {"in_flight": {"fast": 2}, "spend_per_hour": {"batch": 0.5}})
    view.sync("b", {}, {"in_flight": {"fast": 1, "cheap": 4}})
    answer = view.sync("c", {}, {"in_flight": {"fast": 7}})
    assert answer["others"] == {"in_flight": {"fast": 3, "cheap": 4},
                                "spend_per_hour": {"batch": 0.5}}
    assert answer["replicas"] == 3
    clock.now = LIVE_S + 1  # a and b stopped reporting: their load no longer counts
    assert view.sync("c", {}, {"in_flight": {"fast": 7}})["others"] == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.3), st.booleans()), min_size=1, max_size=200),
       st.floats(0.1, 5.0), st.integers(1, 10))
def test_two_synced_replicas_admit_at_most_burst_plus_one_second_beyond_the_limit(
        requests, rate, burst):
    """Requests spread over two replicas that sync every 0.5 s (the ingress's SYNC_S) admit
    at most burst + rate x 1 s beyond what one bucket would over the same time."""
    clock = Clock()
    view = SharedView(clock)
    replicas = {"a": RateLimiter(rate, burst), "b": RateLimiter(rate, burst)}
    admitted, next_sync = 0, 0.5
    for gap, to_b in requests:
        clock.now += gap
        while next_sync <= clock.now:
            for name, limiter in replicas.items():
                answer = view.sync(name, limiter.report(), {})
                limiter.apply(answer["limits"], answer["admitted_by_others"], next_sync)
            next_sync += 0.5
        admitted += replicas["b" if to_b else "a"].retry_after("k", clock.now) == 0
    assert admitted <= burst + rate * clock.now + (burst + rate * 1.0) + 1e-9

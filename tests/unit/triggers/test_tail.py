"""The loop's telemetry tail judges what a read of the whole store would, reading only what is new."""

import random

import pytest
from tandem.telemetry.feedback import Feedback, FeedbackStore, read_feedback
from tandem.telemetry.request_log import RequestLog, read_requests
from tandem.triggers.gather import gather_window
from tandem.watch.tail import TelemetryTail

from .tables import NOW, request

HOUR = 3600.0
LAST_N = 5


def judged(requests, feedback, now, **counts):
    window = gather_window(requests, feedback, model="tandem-tiny", version=3, now=now,
                           window_s=HOUR, last_n=LAST_N, baseline=None, profile=None,
                           scale="-1..1", slo_miss_target=0.05, cost_target_usd=None, **counts)
    return (window.scores, window.baseline_mean_score, window.baseline_negative_rate,
            window.corrections_since_training, window.requests, window.slo_misses,
            window.prompts, window.cost_per_request_usd)


def corrected_since(feedback, since):
    """Requests of the model whose latest rating corrects them, rated after `since`."""
    latest = {row["request_id"]: row for row in feedback.sort_by("time").to_pylist()
              if row["model"] == "tandem-tiny"}
    return sum(row["correction"] is not None and row["time"].timestamp() > since
               for row in latest.values())


def tail_of(root, now):
    return TelemetryTail(root, "tandem-tiny", root / "watch" / "tail.json", window_s=HOUR,
                         last_n=LAST_N, now=now)


def test_the_tail_judges_as_the_whole_store_would_across_ticks_and_restarts(tmp_path):
    rng = random.Random(7)
    clock = {"now": NOW - 10 * HOUR}
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: clock["now"])
    store = FeedbackStore(tmp_path, clock=lambda: clock["now"])
    tail, answered = tail_of(tmp_path, clock["now"]), 0
    try:
        for tick in range(40):
            clock["now"] += 900
            for index in range(rng.randint(0, 12)):
                request_id = f"t{tick}-{index}"
                ago = NOW - clock["now"] + rng.uniform(0, 1200)  # some land in an earlier hour
                record = request(request_id, ago, model_version=rng.choice([2, 3]),
                                 model=rng.choice(["tandem-tiny"] * 4 + ["other"]),
                                 slo_met=rng.choice([True, False, None]))
                log.append(record)
                answered += record["model"] == "tandem-tiny"
                if rng.random() < 0.4:
                    store.add(Feedback(request_id, rng.choice([-1.0, 0.5, 1.0]),
                                       rng.choice([None, "fipo"])), record, "t1")
            log.flush()
            if tick % 7 == 6:  # a restart: state from disk, the window read again
                tail.save()
                tail = tail_of(tmp_path, clock["now"])
            tail.advance(clock["now"])
            whole = judged(read_requests(tmp_path), read_feedback(tmp_path), clock["now"])
            assert judged(tail.window, tail.ratings(), clock["now"]) == whole
            trained = clock["now"] - 3 * HOUR
            assert tail.corrections_since(trained) == corrected_since(read_feedback(tmp_path),
                                                                      trained)
            tail.save()
    finally:
        log.close()
    assert tail.answers_since(None) == answered  # each row counted once
    assert answered > 100


def test_a_failed_tick_reads_its_new_rows_again(tmp_path):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: NOW)
    tail = tail_of(tmp_path, NOW)
    try:
        log.append(request("a", 60))
        log.flush()
        assert tail.advance(NOW)[0].num_rows == 1
        tail.restore(NOW)  # the tick failed before `save`
        assert tail.advance(NOW)[0]["request_id"].to_pylist() == ["a"]
        tail.save()
        assert tail_of(tmp_path, NOW).advance(NOW)[0].num_rows == 0
    finally:
        log.close()


def test_answers_count_from_the_minute_of_the_last_distillation(tmp_path):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: NOW)
    tail = tail_of(tmp_path, NOW - HOUR)
    try:
        for ago in (3000, 1800, 600, 60):
            log.append(request(f"r{ago}", ago))
        log.append(request("no-text", 30, response=None))
        log.append(request("failed", 20, status=500, response=None))
        log.flush()
    finally:
        log.close()
    tail.advance(NOW)
    assert tail.answers_since(None) == 4
    assert tail.answers_since(NOW - 1000) == 2
    assert tail.answers_since(NOW - 1000) == 2


@pytest.mark.parametrize("flood", [0, 30])
def test_rated_requests_missing_from_the_new_rows_are_found_for_the_trace_export(tmp_path, flood):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: NOW)
    store = FeedbackStore(tmp_path, clock=lambda: NOW)
    try:
        record = request("early", 600)
        log.append(record)
        log.flush()
        tail = tail_of(tmp_path, NOW)
        tail.advance(NOW)
        for index in range(flood):
            log.append(request(f"new{index}", 5))
        log.flush()
        store.add(Feedback("early", 1.0), record, "t1")
        requests, feedback = tail.advance(NOW)
        assert requests.num_rows == flood
        both = tail.with_rated_requests(requests, feedback)
        assert "early" in both["request_id"].to_pylist()
        assert both.num_rows == flood + 1
    finally:
        log.close()


def test_a_first_start_reads_back_the_window_and_all_feedback_but_not_older_requests(tmp_path):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: NOW)
    store = FeedbackStore(tmp_path, clock=lambda: NOW)
    try:
        for request_id, ago in (("old", 5 * HOUR), ("recent", 600)):
            record = request(request_id, ago)
            log.append(record)
            store.add(Feedback(request_id, -1.0, "fipo"), record, "t1")
        log.flush()
    finally:
        log.close()
    tail = tail_of(tmp_path, NOW)
    requests, feedback = tail.advance(NOW)
    assert requests.num_rows == 0 and feedback.num_rows == 2
    assert tail.window["request_id"].to_pylist() == ["recent"]
    assert tail.answers_since(None) == 0  # answers count from the first start
    assert tail.corrections_since(None) == 2  # both corrections

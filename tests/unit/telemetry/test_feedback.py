from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tandem.telemetry.feedback import (
    MAX_CORRECTION_BYTES,
    Feedback,
    FeedbackError,
    FeedbackStore,
    normalized_score,
    parse_feedback,
    read_feedback,
)
from tandem.telemetry.schema import FEEDBACK_SCHEMA, coerce_row
from tandem.telemetry.storage import resolve, write_file

from .helpers import T0, request


def test_parse_a_full_post():
    body = {"request_id": "chatcmpl-1", "score": 4, "correction": "fipo zemu", "feedback_id": "f1"}
    assert parse_feedback(body, "1..5") == Feedback("chatcmpl-1", 4.0, "fipo zemu", "f1")
    assert parse_feedback({"request_id": "r", "score": -0.5}, "-1..1") == Feedback("r", -0.5)


@pytest.mark.parametrize(("body", "param", "message"), [
    ([1, 2], None, "must be a JSON object, got list"),
    ({"score": 1}, "request_id", "request_id is required"),
    ({"request_id": "  ", "score": 1}, "request_id", "request_id is required"),
    ({"request_id": 7, "score": 1}, "request_id", "request_id is required"),
    ({"request_id": "r"}, "score", r"score is required: a number in \[-1, 1\]"),
    ({"request_id": "r", "score": "1"}, "score", "score must be a number .* got str"),
    ({"request_id": "r", "score": True}, "score", "got bool"),
    ({"request_id": "r", "score": None}, "score", "got NoneType"),
    ({"request_id": "r", "score": 1.5}, "score", r"score must be in \[-1, 1\], got 1.5"),
    ({"request_id": "r", "score": float("nan")}, "score", "got nan"),
    ({"request_id": "r", "score": 1, "correction": 3}, "correction", "non-empty string"),
    ({"request_id": "r", "score": 1, "correction": ""}, "correction", "non-empty string"),
    ({"request_id": "r", "score": 1, "correction": "é" * 4097}, "correction", "8194 bytes, over"),
    ({"request_id": "r", "score": 1, "feedback_id": ""}, "feedback_id", "1 to 128"),
    ({"request_id": "r", "score": 1, "feedback_id": "x" * 129}, "feedback_id", "1 to 128"),
    ({"request_id": "r", "score": 1, "feedback_id": 5}, "feedback_id", "1 to 128"),
    ({"request_id": "r", "score": 1, "rating": 1}, "rating", "unknown field 'rating'"),
])
def test_bad_posts_name_the_field(body, param, message):
    with pytest.raises(FeedbackError, match=message) as caught:
        parse_feedback(body, "-1..1")
    assert caught.value.status == 400 and caught.value.param == param


def test_scale_bounds_are_inclusive():
    assert parse_feedback({"request_id": "r", "score": 5}, "1..5").score == 5.0
    assert parse_feedback({"request_id": "r", "score": 1}, "1..5").score == 1.0
    assert parse_feedback({"request_id": "r", "score": 1, "correction": "a" * MAX_CORRECTION_BYTES},
                          "1..5").correction
    with pytest.raises(FeedbackError, match=r"\[1, 5\], got 0"):
        parse_feedback({"request_id": "r", "score": 0}, "1..5")


def test_unknown_scale_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown feedback scale"):
        normalized_score(1.0, "0..10")


@pytest.mark.parametrize(("score", "scale", "expected"), [
    (1, "1..5", -1.0), (3, "1..5", 0.0), (5, "1..5", 1.0), (2, "1..5", -0.5),
    (-1, "-1..1", -1.0), (0.25, "-1..1", 0.25),
])
def test_normalized_score(score, scale, expected):
    assert normalized_score(score, scale) == pytest.approx(expected)


@given(st.floats(1, 5))
def test_normalized_score_stays_in_range_and_keeps_order(score):
    value = normalized_score(score, "1..5")
    assert -1.0 <= value <= 1.0
    assert (value < 0) == (score < 3)


def test_store_copies_the_request_and_stores_a_feedback_id_once(tmp_path):
    store = FeedbackStore(tmp_path, clock=lambda: T0)
    record = request("r1", model_version=7)
    assert store.add(Feedback("r1", -1.0, "fipo zemu", "f1"), record, "alice")
    assert not store.add(Feedback("r1", 1.0, None, "f1"), record)
    assert store.add(Feedback("r1", 0.5), None)
    assert store.add(Feedback("r1", 0.5), None)
    table = read_feedback(tmp_path)
    assert table.schema == FEEDBACK_SCHEMA and table.num_rows == 3
    rows = {row["feedback_id"]: row for row in table.to_pylist()}
    first = rows["f1"]
    assert (first["score"], first["correction"], first["model"], first["model_version"], first["prompt"],
            first["tenant"]) == (-1.0, "fipo zemu", "tandem-tiny", 7, "translate: red cat =>", "alice")
    other = next(row for key, row in rows.items() if key != "f1")
    assert other["model"] is None and other["prompt"] is None and len(other["feedback_id"]) == 32
    assert all(path.parent.name == "hour=10" and path.parent.parent.name == "date=2025-03-01"
               for path in tmp_path.rglob("*.parquet"))


def test_an_unwritable_store_raises_and_stores_nothing(tmp_path):
    """The ingress answers 503 with Retry-After on this; the post is not half-stored."""
    store = FeedbackStore(tmp_path, clock=lambda: T0)
    (tmp_path / "feedback").write_text("a file where the store's directory should be")
    with pytest.raises(OSError):
        store.add(Feedback("r1", 1.0, None, "f1"), None, "alice")
    (tmp_path / "feedback").unlink()
    assert read_feedback(tmp_path).num_rows == 0
    assert store.add(Feedback("r1", 1.0, None, "f1"), None, "alice")  # the retry is stored


def test_a_restarted_store_and_a_second_process_do_not_store_twice(tmp_path):
    FeedbackStore(tmp_path).add(Feedback("r1", 1.0, None, "f1"))
    assert not FeedbackStore(tmp_path).add(Feedback("r1", 1.0, None, "f1"))
    one, two = FeedbackStore(tmp_path), FeedbackStore(tmp_path)
    assert one.add(Feedback("r2", 1.0, None, "f2"))
    assert not two.add(Feedback("r2", 1.0, None, "f2"))
    assert sorted(read_feedback(tmp_path).column("feedback_id").to_pylist()) == ["f1", "f2"]


def test_read_feedback_keeps_the_first_post_of_a_raced_id(tmp_path):
    fs, base = resolve(tmp_path)
    for offset, score in ((5, 1.0), (0, -1.0)):
        row = {"feedback_id": "f1", "request_id": "r1", "time": T0 + offset, "score": score}
        table = pa.Table.from_pylist([coerce_row(row, FEEDBACK_SCHEMA)], schema=FEEDBACK_SCHEMA)
        write_file(fs, f"{base}/feedback/date=2025-03-01", table, T0 + offset)
    table = read_feedback(tmp_path)
    assert table.num_rows == 1 and table.column("score").to_pylist() == [-1.0]


def test_read_feedback_of_an_empty_store(tmp_path):
    assert read_feedback(tmp_path).num_rows == 0
    assert read_feedback(tmp_path).schema == FEEDBACK_SCHEMA


def test_a_row_carries_what_judging_the_rating_takes(tmp_path):
    """A consumer judges a rating from the feedback row alone, without the request log."""
    store = FeedbackStore(tmp_path, clock=lambda: T0 + 60)
    store.add(Feedback("r1", 1.0, None, "f1"),
              request("r1", tier="interactive", status=200, response=" gato rojo"), "alice")
    store.add(Feedback("gone", -1.0, None, "f2"), None, "alice")
    rows = {row["feedback_id"]: row for row in read_feedback(tmp_path).to_pylist()}
    assert (rows["f1"]["tier"], rows["f1"]["response"], rows["f1"]["status"],
            rows["f1"]["request_time"]) == ("interactive", " gato rojo", 200,
                                            datetime.fromtimestamp(T0, UTC))
    assert all(rows["f2"][name] is None for name in ("tier", "response", "status", "request_time"))


def _old_post(tmp_path, feedback_id: str, when: float) -> None:
    """A post as stores wrote it before hour partitions and the copied request columns."""
    fs, base = resolve(tmp_path)
    old_schema = pa.schema([FEEDBACK_SCHEMA.field(name) for name in
                            ("feedback_id", "request_id", "time", "score", "correction", "model",
                             "model_version", "prompt", "tenant")])
    row = {"feedback_id": feedback_id, "request_id": "r1", "time": datetime.fromtimestamp(when, UTC),
           "score": 1.0}
    write_file(fs, f"{base}/feedback/date={datetime.fromtimestamp(when, UTC):%Y-%m-%d}",
               pa.Table.from_pylist([row], schema=old_schema), when)


def test_read_feedback_reads_the_date_only_layout_beside_hours(tmp_path):
    _old_post(tmp_path, "old", T0 - 86400)
    _old_post(tmp_path, "old-today", T0 - 600)
    FeedbackStore(tmp_path, clock=lambda: T0).add(Feedback("r1", 1.0, None, "new"))
    table = read_feedback(tmp_path)
    assert table.schema == FEEDBACK_SCHEMA
    assert table.column("feedback_id").to_pylist() == ["old", "old-today", "new"]
    assert table.to_pylist()[0]["tier"] is None
    assert not FeedbackStore(tmp_path, clock=lambda: T0).add(Feedback("r1", 1.0, None, "old"))


def test_read_feedback_since_and_columns(tmp_path):
    _old_post(tmp_path, "yesterday", T0 - 86400)
    for offset, feedback_id in ((0, "f0"), (3600, "f1"), (7200, "f2")):
        FeedbackStore(tmp_path, clock=lambda offset=offset: T0 + offset).add(
            Feedback("r1", 0.5, None, feedback_id), request("r1"))
    since = datetime.fromtimestamp(T0 + 60, UTC)
    assert read_feedback(tmp_path, since=since).column("feedback_id").to_pylist() == ["f1", "f2"]
    assert read_feedback(tmp_path, since=since - timedelta(days=2)).num_rows == 4
    table = read_feedback(tmp_path, since=since, columns=["score", "tier"])
    assert table.column_names == ["time", "score", "tier"] and table.num_rows == 2
    assert read_feedback(tmp_path / "absent", columns=["score"]).column_names == ["time", "score"]
    with pytest.raises(ValueError, match="no such feedback column"):
        read_feedback(tmp_path, columns=["score", "colour"])
    with pytest.raises(ValueError, match="naive"):
        read_feedback(tmp_path, since=datetime(2025, 3, 1))


def test_a_retried_feedback_id_is_recognised_within_the_lookback(tmp_path):
    FeedbackStore(tmp_path, clock=lambda: T0).add(Feedback("r1", 1.0, None, "f1"))
    assert not FeedbackStore(tmp_path, clock=lambda: T0 + 6 * 86400).add(
        Feedback("r1", -1.0, None, "f1"))
    later = FeedbackStore(tmp_path, clock=lambda: T0 + 8 * 86400)
    assert later.add(Feedback("r1", -1.0, None, "f1"))  # past the lookback: stored again
    table = read_feedback(tmp_path)
    assert table.num_rows == 1 and table.column("score").to_pylist() == [1.0]  # the first post

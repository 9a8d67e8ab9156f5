import itertools
import json
import random
import threading
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from tandem.telemetry.compaction import CompactionSummary, CompactionTask, compact
from tandem.telemetry.feedback import Feedback, FeedbackStore, read_feedback
from tandem.telemetry.request_log import RequestLog, read_requests
from tandem.telemetry.schema import FEEDBACK_SCHEMA, coerce_row
from tandem.telemetry.storage import SOURCES_KEY, read_live, resolve, write_file

from .helpers import T0, request, wait_until

HOUR = 3600.0
CLOSED = T0 + HOUR  # 11:30: hour 10 ended more than 15 minutes ago, hour 11 has not


def rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: row["request_id"])


def files(tmp_path, hour: str = "10", store: str = "requests") -> list[str]:
    return sorted(path.name for path in (tmp_path / store / "date=2025-03-01" / f"hour={hour}")
                  .glob("*.parquet"))


def sources(path) -> list[list]:
    return json.loads(pq.read_metadata(path).metadata[SOURCES_KEY])


def write_flushes(tmp_path, logs, count: int, hour_offsets=(0.0,)) -> RequestLog:
    """`count` flushes of one record per hour in `hour_offsets` (from T0), a file each."""
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(log)
    for index, offset in itertools.product(range(count), hour_offsets):
        log.append(request(f"r{index}-{offset:g}", T0 + offset))
        log.flush()
    return log


def test_a_closed_hour_becomes_one_file_naming_its_sources(tmp_path, logs):
    write_flushes(tmp_path, logs, 6, (0.0, HOUR))
    before, written = read_requests(tmp_path), files(tmp_path)
    open_hour = files(tmp_path, "11")
    summary = compact(tmp_path, now=CLOSED, sources_kept_s=0)
    assert summary == CompactionSummary(files_compacted=6, files_written=1, files_deleted=6)
    (compacted,) = files(tmp_path)
    assert compacted.startswith("compact-20250301T113000")
    assert sources(tmp_path / "requests/date=2025-03-01/hour=10" / compacted) == [
        [name, 1] for name in written]
    assert pq.ParquetFile(tmp_path / "requests/date=2025-03-01/hour=10" / compacted
                          ).metadata.num_row_groups == 6
    assert files(tmp_path, "11") == open_hour  # not closed yet: left alone
    assert rows(read_requests(tmp_path)) == rows(before)
    assert compact(tmp_path, now=CLOSED) == CompactionSummary()  # nothing more to do


def test_sources_stay_beside_the_compacted_file_for_a_while(tmp_path, logs):
    """A reader listing the partition meanwhile reads each row once (`live_files`)."""
    write_flushes(tmp_path, logs, 3)
    before = read_requests(tmp_path)
    assert compact(tmp_path, now=CLOSED, sources_kept_s=60).files_written == 1
    assert len(files(tmp_path)) == 4 and rows(read_requests(tmp_path)) == rows(before)
    assert compact(tmp_path, now=CLOSED + 30, sources_kept_s=60).files_deleted == 0
    assert compact(tmp_path, now=CLOSED + 61, sources_kept_s=60).files_deleted == 3
    assert len(files(tmp_path)) == 1 and rows(read_requests(tmp_path)) == rows(before)


def test_a_large_hour_is_split_into_at_most_four_files(tmp_path, logs):
    write_flushes(tmp_path, logs, 10)
    before = read_requests(tmp_path)
    summary = compact(tmp_path, now=CLOSED, sources_kept_s=0, target_file_bytes=1)
    assert summary.files_written == 4 and len(files(tmp_path)) == 4
    assert rows(read_requests(tmp_path)) == rows(before)
    named = [entry for name in files(tmp_path)
             for entry in sources(tmp_path / "requests/date=2025-03-01/hour=10" / name)]
    assert len(named) == 10 and len({name for name, _ in named}) == 10
    assert compact(tmp_path, now=CLOSED, target_file_bytes=1) == CompactionSummary()


def test_a_late_file_is_compacted_with_the_compacted_one_carrying_its_names(tmp_path, logs):
    log = write_flushes(tmp_path, logs, 3)
    compact(tmp_path, now=CLOSED, sources_kept_s=0)
    folder = tmp_path / "requests/date=2025-03-01/hour=10"
    (first,) = files(tmp_path)
    carried = sources(folder / first)
    log.append(request("late", T0 + 5))
    log.flush()
    late = next(name for name in files(tmp_path) if name.startswith("part-"))
    before = read_requests(tmp_path)
    assert compact(tmp_path, now=CLOSED + 60, sources_kept_s=0).files_compacted == 2
    (second,) = files(tmp_path)
    assert sources(folder / second) == [*carried, [late, 1]]  # writers' names only
    assert rows(read_requests(tmp_path)) == rows(before) and len(before) == 4


def test_a_compacted_file_split_off_alone_is_kept_not_copied(tmp_path, logs):
    """A copy would name the same sources as the original, and readers would keep both."""
    log = write_flushes(tmp_path, logs, 10)
    compact(tmp_path, now=CLOSED, sources_kept_s=0)
    (big,) = files(tmp_path)
    log.append(request("late", T0 + 5))
    log.flush()
    before = read_requests(tmp_path)
    size = (tmp_path / "requests/date=2025-03-01/hour=10" / big).stat().st_size
    summary = compact(tmp_path, now=CLOSED + 60, sources_kept_s=0, target_file_bytes=size)
    assert (summary.files_compacted, summary.files_written) == (1, 1)
    assert big in files(tmp_path) and len(files(tmp_path)) == 2
    assert rows(read_requests(tmp_path)) == rows(before) and len(before) == 11


def test_retention_deletes_only_partitions_past_it_in_both_stores(tmp_path, logs):
    day = 86400.0
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(log)
    for name, when in (("old", T0 - 31 * day), ("hour-past", T0 - 30 * day - 2 * HOUR),
                       ("hour-kept", T0 - 30 * day + HOUR), ("recent", T0 - day)):
        log.append(request(name, when))
        FeedbackStore(tmp_path, clock=lambda when=when: when).add(Feedback(name, 1.0, None, name))
    log.flush()
    fs, base = resolve(tmp_path)
    old_layout = datetime.fromtimestamp(T0 - 31 * day, UTC)
    table = read_feedback(tmp_path).slice(0, 1)
    write_file(fs, f"{base}/feedback/date={old_layout:%Y-%m-%d}", table, T0 - 31 * day)
    summary = compact(tmp_path, now=T0, retention_days=30)
    assert summary.partitions_deleted == 4  # each store: the old day whole, one hour of the next
    kept = ["hour-kept", "recent"]
    assert sorted(read_requests(tmp_path).column("request_id").to_pylist()) == kept
    assert sorted(read_feedback(tmp_path).column("feedback_id").to_pylist()) == kept
    assert not (tmp_path / "feedback" / f"date={old_layout:%Y-%m-%d}").exists()
    assert (tmp_path / "requests" / "date=2025-01-30").is_dir()


def test_feedback_is_compacted_old_layout_and_new_columns_alike(tmp_path):
    fs, base = resolve(tmp_path)
    old_schema = FEEDBACK_SCHEMA.remove(FEEDBACK_SCHEMA.get_field_index("tier"))
    for index in range(3):
        row = {"feedback_id": f"old{index}", "request_id": "r", "time": T0 - 86400 + index,
               "score": 1.0}
        table = pa.Table.from_pylist([coerce_row(row, old_schema)], schema=old_schema)
        write_file(fs, f"{base}/feedback/date=2025-02-28", table, T0)
    store = FeedbackStore(tmp_path, clock=lambda: T0)
    for index in range(3):
        store.add(Feedback("r1", 0.5, None, f"new{index}"), request("r1", tier="batch"))
    before = read_feedback(tmp_path)
    summary = compact(tmp_path, now=CLOSED, sources_kept_s=0)
    assert summary.files_written == 2 and summary.files_compacted == 6
    assert files(tmp_path, store="feedback")[0].startswith("compact-")
    assert len(list((tmp_path / "feedback/date=2025-02-28").glob("*.parquet"))) == 1
    after = read_feedback(tmp_path)
    assert after.to_pylist() == before.to_pylist()
    assert after.column("tier").to_pylist() == [None] * 3 + ["batch"] * 3


def test_find_follows_a_record_into_the_compacted_file(tmp_path, logs):
    log = write_flushes(tmp_path, logs, 3)
    for index in range(3):
        log.append(request(f"t{index}", T0, tenant="alice"))
        log.flush()
    assert compact(tmp_path, now=CLOSED, sources_kept_s=0).files_deleted == 6
    assert log.find("t1")["tenant"] == "alice"  # its indexed file is gone: refreshed, found
    assert log.find("never") is None
    assert log.logged_for_another("t2", "bob")
    other = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(other)
    other.refresh_index()
    assert other.find("r2-0")["request_id"] == "r2-0" and other.logged_for_another("t0", "bob")


def test_readers_see_every_row_once_while_writers_and_the_compactor_run(tmp_path, logs):
    """Rows are written with old times, so their hours are closed and compacted while more
    late files land; readers check each read against what was written before it began."""
    log = RequestLog(tmp_path, flush_rows=10_000, flush_interval_s=0.05, clock=lambda: T0)
    logs.append(log)
    store = FeedbackStore(tmp_path, clock=lambda: T0 + random.randrange(3) * HOUR)
    fs, base = resolve(tmp_path)
    durable: dict[str, set[str]] = {"requests": set(), "feedback": set()}
    lock, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []
    reads, compactions = [], []

    def guarded(work):
        def run():
            try:
                work()
            except BaseException as error:  # reported by the test thread
                errors.append(error)
                stop.set()
        return threading.Thread(target=run)

    def write_requests():
        for batch in range(40):
            ids = [f"q{batch}-{index}" for index in range(20)]
            for index, request_id in enumerate(ids):
                log.append(request(request_id, T0 + (index % 4) * HOUR))
            log.flush()
            with lock:
                durable["requests"].update(ids)

    def write_feedback():
        for index in range(100):
            assert store.add(Feedback("r", 1.0, None, f"f{index}"))
            with lock:
                durable["feedback"].add(f"f{index}")

    def compact_repeatedly():
        now = T0 + 86400
        while not stop.is_set():
            compactions.append(compact(tmp_path, now=now, sources_kept_s=60,
                                       target_file_bytes=random.choice([1, 4096, 10**9])))
            assert not compactions[-1].partitions_failed
            now += 30

    def read_repeatedly():
        while not stop.is_set():
            with lock:
                requests, feedback = set(durable["requests"]), set(durable["feedback"])
            seen = read_requests(tmp_path, columns=["request_id"]).column("request_id").to_pylist()
            assert len(seen) == len(set(seen)) and requests <= set(seen)
            raw = read_live(fs, f"{base}/feedback", FEEDBACK_SCHEMA, ["feedback_id"])
            stored = raw.column("feedback_id").to_pylist()
            assert len(stored) == len(set(stored)) and feedback <= set(stored)
            assert feedback <= set(read_feedback(tmp_path).column("feedback_id").to_pylist())
            if requests:
                assert log.find(random.choice(sorted(requests))) is not None
            reads.append(len(seen))

    writers = [guarded(write_requests), guarded(write_feedback)]
    others = [guarded(compact_repeatedly)] + [guarded(read_repeatedly) for _ in range(2)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join()
    ran = len(compactions)  # a few more runs with readers on: the last sources go
    wait_until(lambda: len(compactions) > ran + 4 or stop.is_set())
    stop.set()
    for thread in others:
        thread.join()
    if errors:
        raise errors[0]
    assert len(reads) > 5 and sum(done.files_written for done in compactions) > 3
    assert sum(done.files_deleted for done in compactions) > 3
    compact(tmp_path, now=T0 + 2 * 86400, sources_kept_s=0)
    requests = read_requests(tmp_path).column("request_id").to_pylist()
    assert sorted(requests) == sorted(durable["requests"]) and len(requests) == 800
    stored = read_live(fs, f"{base}/feedback", FEEDBACK_SCHEMA, ["feedback_id"])
    assert sorted(stored.column("feedback_id").to_pylist()) == sorted(durable["feedback"])
    for folder in {path.parent for path in tmp_path.rglob("*.parquet")}:
        assert len(list(folder.glob("*.parquet"))) <= 4


def test_the_loop_compacts_in_a_ray_task_one_at_a_time(tmp_path, logs, local_ray):
    write_flushes(tmp_path, logs, 3)
    task = CompactionTask(tmp_path, sources_kept_s=0)
    assert task.tick(CLOSED) is None  # started; none finished before
    assert task.wait().files_written == 1
    assert task.wait() is None  # none in flight
    task.tick(CLOSED)
    assert task.tick(CLOSED) in (None, CompactionSummary())  # still running, or nothing to do
    assert task.wait() == CompactionSummary()
    assert len(files(tmp_path)) == 1

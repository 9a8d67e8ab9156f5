import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tandem.telemetry.request_log import RequestLog, read_requests
from tandem.telemetry.schema import REQUEST_SCHEMA

from .helpers import T0, request, wait_until

FILE = re.compile(r"requests/date=\d{4}-\d{2}-\d{2}/hour=\d{2}/part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet$")


def ids(table) -> list[str]:
    return table.column("request_id").to_pylist()


def test_flush_writes_one_new_file_per_hour_partition(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(log)
    for index in range(6):
        log.append(request(f"r{index}", T0 + 1800 * index))
    assert log.flush() == 6 and log.buffered == 0
    log.append(request("late", T0 + 1))
    assert log.flush() == 1
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.parquet"))
    assert all(FILE.search(path) for path in files)
    assert [path.split("/")[1:3] for path in files].count(["date=2025-03-01", "hour=10"]) == 2
    assert {tuple(path.split("/")[1:3]) for path in files} == {
        ("date=2025-03-01", f"hour={hour}") for hour in ("10", "11", "12", "13")}
    assert not list(tmp_path.rglob(".*"))
    table = read_requests(tmp_path)
    assert table.schema == REQUEST_SCHEMA
    assert ids(table) == ["r0", "late", "r1", "r2", "r3", "r4", "r5"]
    assert table.to_pylist()[0]["time"] == datetime.fromtimestamp(T0, UTC)
    assert pq.read_schema(tmp_path.joinpath(files[0])) == REQUEST_SCHEMA


def test_bad_records_are_dropped_and_counted_not_raised(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    log.append(request("ok"))
    log.append(request("no-status", status=None))
    log.append(request("typo", colour="red"))
    log.append(None)
    log.append(request("surrogate", prompt="\ud800"))
    assert log.dropped == 3
    assert log.flush() == 1
    assert log.dropped == 4 and ids(read_requests(tmp_path)) == ["ok"]


def test_background_flush_every_interval_without_close(tmp_path, logs):
    log = RequestLog(tmp_path, flush_rows=10_000, flush_interval_s=0.1)
    logs.append(log)
    for index in range(20):
        log.append(request(f"r{index}"))
    assert wait_until(lambda: read_requests(tmp_path).num_rows == 20)
    assert log.buffered == 0 and log.written == 20


def test_background_flush_when_flush_rows_are_buffered(tmp_path, logs):
    log = RequestLog(tmp_path, flush_rows=5, flush_interval_s=3600)
    logs.append(log)
    for index in range(4):
        log.append(request(f"r{index}"))
    assert not wait_until(lambda: log.written > 0, timeout=0.3)
    log.append(request("r4"))
    assert wait_until(lambda: log.written == 5)


CRASH = """
import os, sys, time
sys.path.insert(0, {helpers!r})
from helpers import request
from tandem.telemetry.request_log import RequestLog
log = RequestLog({root!r}, flush_rows={flush_rows}, flush_interval_s={interval})
for index in range({count}):
    log.append(request(f"r{{index}}"))
last = time.monotonic()
deadline = last + 30
while {settled} and time.monotonic() < deadline:
    time.sleep(0.01)
print(log.buffered, time.monotonic() - last, flush=True)
os._exit(0)
"""


def crash(tmp_path, settled: str, **params) -> tuple[int, float]:
    """Run a process that appends, waits until `settled` (never flushing itself) and dies
    without closing; returns how many records it still buffered and how long it waited."""
    script = CRASH.format(root=str(tmp_path), helpers=str(Path(__file__).parent),
                          settled=f"not ({settled})", **params)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    buffered, waited = done.stdout.split()
    return int(buffered), float(waited)


def test_crash_loses_at_most_flush_rows_records(tmp_path):
    buffered, _ = crash(tmp_path, "log.buffered < 10 and log.written + log.buffered == 25",
                        flush_rows=10, interval=3600, count=25)
    on_disk = ids(read_requests(tmp_path))
    assert len(on_disk) == len(set(on_disk)) == 25 - buffered
    assert buffered < 10


def test_crash_loses_at_most_one_flush_interval(tmp_path):
    buffered, waited = crash(tmp_path, "log.written == 7", flush_rows=10_000, interval=0.2, count=7)
    assert buffered == 0 and waited < 10
    assert sorted(ids(read_requests(tmp_path))) == [f"r{index}" for index in range(7)]


def test_concurrent_appends_land_exactly_once(tmp_path):
    log = RequestLog(tmp_path, flush_rows=37, flush_interval_s=0.005)
    stop = threading.Event()

    def appender(worker: int) -> None:
        for index in range(400):
            log.append(request(f"w{worker}-{index}", T0 + index * 20.0))

    def flusher() -> None:
        while not stop.is_set():
            log.flush()

    workers = [threading.Thread(target=appender, args=(worker,)) for worker in range(8)]
    extra = threading.Thread(target=flusher)
    extra.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    extra.join()
    log.close()
    written = ids(read_requests(tmp_path))
    assert len(written) == 3200 == len(set(written)) == log.written
    assert log.dropped == 0


def test_failed_flush_keeps_records_for_the_next_try(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    blocker = tmp_path / "requests"
    blocker.write_text("not a directory")
    log.append(request("a"))
    log.append(request("b"))
    with pytest.raises(OSError):
        log.flush()
    assert log.buffered == 2 and log.written == 0
    blocker.unlink()
    log.append(request("c"))
    assert log.flush() == 3
    assert ids(read_requests(tmp_path)) == ["a", "b", "c"]


def test_close_flushes_and_later_appends_are_dropped(tmp_path):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    log.append(request("a"))
    log.close()
    log.append(request("b"))
    assert log.dropped == 1 and ids(read_requests(tmp_path)) == ["a"]


def test_ids_are_known_with_their_tenant_buffered_flushed_and_from_other_processes(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0, recent_ids=2)
    logs.append(log)
    for index in range(4):
        log.append(request(f"r{index}", tenant="alice"))
    assert log.logged_for_another("r3", "bob") and not log.logged_for_another("r3", "alice")
    assert not log.logged_for_another("r0", "bob")  # beyond the 2 remembered, not yet on disk
    log.flush()
    assert all(log.logged_for_another(f"r{index}", "bob") for index in range(4))
    assert log.find("r1")["prompt"] == "translate: red cat =>"
    restarted = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0 + 3600)
    logs.append(restarted)
    assert wait_until(lambda: restarted.logged_for_another("r0", "bob"))  # its first index
    assert not restarted.logged_for_another("never", "bob")
    assert restarted.find("r2")["request_id"] == "r2" and restarted.find("never") is None
    log.append(request("r9", tenant="alice"))
    log.flush()
    assert not restarted.logged_for_another("r9", "bob")  # until its index is refreshed
    restarted.refresh_index()
    assert restarted.logged_for_another("r9", "bob") and restarted.find("r9") is not None
    week_later = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0 + 8 * 86400)
    logs.append(week_later)
    week_later.refresh_index()
    assert not week_later.logged_for_another("r0", "bob")


def test_a_record_from_before_tenants_belongs_to_no_one(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    log.append(request("old"))
    assert not log.logged_for_another("old", "anyone")


def test_lookups_never_list_the_store(tmp_path, logs, monkeypatch):
    """An unknown id (a client's fresh x-request-id, feedback on a bad id) costs a dict
    read, not a directory listing per request."""
    from tandem.telemetry import storage

    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(log)
    log.append(request("a", tenant="alice"))
    log.flush()
    log.refresh_index()
    listings = []
    real = storage.parquet_files
    monkeypatch.setattr(storage, "parquet_files", lambda *a: listings.append(a) or real(*a))
    for index in range(100):
        assert not log.logged_for_another(f"new-{index}", "bob")
        assert log.find(f"new-{index}") is None
    assert log.find("a")["tenant"] == "alice"
    assert listings == []


def test_the_buffer_is_capped_while_the_store_fails(tmp_path, logs):
    """Oldest unwritten records go first past the cap, counted; writing resumes after."""
    log = RequestLog(tmp_path, flush_interval_s=3600, max_buffered_rows=50,
                     max_buffered_bytes=10**9)
    logs.append(log)
    (tmp_path / "requests").write_text("a file where the store's directory should be")
    for index in range(80):
        log.append(request(f"r{index:02d}", T0 + index))
    assert log.buffered == 50 and log.dropped == 30
    with pytest.raises(OSError):
        log.flush()
    log.append(request("r80", T0 + 80))
    assert log.buffered == 50 and log.dropped == 31
    (tmp_path / "requests").unlink()
    assert log.flush() == 50
    assert ids(read_requests(tmp_path)) == [f"r{index:02d}" for index in range(31, 81)]


def test_the_buffer_is_capped_in_bytes(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600, max_buffered_bytes=100_000)
    logs.append(log)
    for index in range(20):
        log.append(request(f"r{index}", prompt="x" * 20_000))
    assert log.buffered == 4 and log.dropped == 16


def test_find_returns_a_buffered_record(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    log.append(request("a", response="hello"))
    assert log.find("a")["response"] == "hello"


def test_find_sees_a_record_while_its_batch_is_being_written(tmp_path, logs, monkeypatch):
    """Feedback may arrive while the flush thread writes the batch its request is in: the
    record is out of the buffer and not yet indexed on disk, and must still be found."""
    from tandem.telemetry import request_log

    writing, release = threading.Event(), threading.Event()
    real_write = request_log.write_file

    def slow_write(*args, **kwargs):
        writing.set()
        release.wait(10)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(request_log, "write_file", slow_write)
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    log.append(request("mid-flush"))
    flusher = threading.Thread(target=log.flush)
    flusher.start()
    assert writing.wait(10)
    found = log.find("mid-flush")
    release.set()
    flusher.join()
    assert found is not None and found["request_id"] == "mid-flush"
    assert log.find("mid-flush") is not None  # and from disk afterwards


def test_read_requests_since_and_missing_directory(tmp_path, logs):
    assert read_requests(tmp_path / "absent").num_rows == 0
    assert read_requests(tmp_path / "absent").schema == REQUEST_SCHEMA
    log = RequestLog(f"file://{tmp_path}", flush_interval_s=3600)
    logs.append(log)
    for index in range(5):
        log.append(request(f"r{index}", T0 + 3600 * index))
    log.flush()
    since = datetime.fromtimestamp(T0, UTC) + timedelta(hours=2)
    assert ids(read_requests(tmp_path, since=since)) == ["r2", "r3", "r4"]
    assert ids(read_requests(f"file://{tmp_path}", since=since + timedelta(minutes=1))) == ["r3", "r4"]
    with pytest.raises(ValueError, match="naive"):
        read_requests(tmp_path, since=datetime(2025, 3, 1))


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="flush_rows"):
        RequestLog(tmp_path, flush_rows=0)


def test_read_requests_reads_only_the_columns_asked_for(tmp_path, logs):
    log = RequestLog(tmp_path, flush_interval_s=3600)
    logs.append(log)
    log.append(request("a", prompt="long text"))
    log.flush()
    table = read_requests(tmp_path, columns=["pool", "ttft_ms"])
    assert table.column_names == ["time", "pool", "ttft_ms"] and table.num_rows == 1
    assert read_requests(tmp_path / "absent", columns=["pool"]).column_names == ["time", "pool"]
    with pytest.raises(ValueError, match="no such request-log column"):
        read_requests(tmp_path, columns=["pool", "colour"])

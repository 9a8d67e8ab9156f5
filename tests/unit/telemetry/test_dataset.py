"""Ray read tasks return only what an analysis keeps, each row once, old files included."""

import pyarrow as pa
import pyarrow.parquet as pq
from tandem.telemetry.dataset import read_kept
from tandem.telemetry.request_log import RequestLog
from tandem.telemetry.schema import as_utc
from tandem.train.distill import TeacherAnswers

from .helpers import T0, request


def test_read_tasks_keep_the_window_rows_the_analysis_asks_for(tmp_path, logs, local_ray):
    log = RequestLog(tmp_path, flush_interval_s=3600, clock=lambda: T0)
    logs.append(log)
    for index in range(30):
        log.append(request(f"r{index}", T0 + 600 * index, model="teacher" if index % 3 else "other",
                           status=200 if index % 5 else 503))
        if index % 7 == 0:
            log.flush()  # several files and hours
    log.flush()
    old = tmp_path / "requests" / "date=2025-03-01" / "hour=11" / "part-old.parquet"
    pq.write_table(pa.table({"request_id": ["before-tenants"], "time": pa.array(
        [as_utc(T0 + 3700)], pa.timestamp("us", tz="UTC")), "model": ["teacher"],
        "status": pa.array([200], pa.int16())}), old)  # written before most columns existed

    kept = read_kept(tmp_path, "requests", since=as_utc(T0 + 3000),  # as distillation does
                     columns=["request_id", "model", "status", "tenant"],
                     keep=TeacherAnswers("teacher"))
    expected = sorted([f"r{i}" for i in range(5, 30) if i % 3 and i % 5] + ["before-tenants"])
    assert sorted(kept["request_id"].to_pylist()) == expected
    assert kept.column_names == ["request_id", "time", "model", "status", "tenant"]
    assert kept["time"].to_pylist() == sorted(kept["time"].to_pylist())
    assert read_kept(tmp_path, "feedback").num_rows == 0  # no store yet

"""What the request log's readers cost at a real service's scale: 1 M request rows in the
project's own schema and layout (48 hours x 50 files per hour, written in bulk, the last
48 hours up to now), read by `tandem route explain` and the drain-timeout lookup as they
were (every column of every row) and as they are (the window they need, and its columns).

Each reader runs in its own process, so its time and peak RSS are its own; the "before"
reader is the old code path, run in the same session on the same files. This is the
first slice of the telemetry-scale work: the watcher's tick, compaction and the
retraining set still read whole stores.
Run: `.venv/bin/python -m pytest -s tests/bench/test_telemetry_scale.py`
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROWS = 1_000_000
HOURS = 48
FILES_PER_HOUR = 50
TARGET_EXPLAIN_S = 5.0  # the target at 10 M rows; measured here at 1 M

MEASURE = """
import json, resource, sys, time
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started,
                   "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

READERS = {
    "route explain, before (every column, whole log)": """
from tandem.routing.outcome import ttft_calibration
from tandem.telemetry.request_log import read_requests
ttft_calibration(read_requests(sys.argv[1]).to_pylist(), 20)
""",
    "route explain, now (last hour, 3 columns)": """
from tandem.cli import main
assert main(["route", "explain", "--telemetry", sys.argv[1], "--file", sys.argv[2]]) == 0
""",
    "drain TPOT, before (every column, whole log)": """
from tandem.telemetry.request_log import read_requests
read_requests(sys.argv[1]).select(["pool", "status", "tpot_ms"]).to_pylist()
""",
    "drain TPOT, now (last hour, 3 columns)": """
from tandem.serve.drain import measured_tpot_ms
measured_tpot_ms(sys.argv[1])
""",
}


def write_request_log(root: Path, now: float) -> int:
    """ROWS request rows, spread evenly over the HOURS before `now`, FILES_PER_HOUR files an
    hour, in `RequestLog`'s layout (a bulk writer: one Arrow table per file)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tandem.telemetry.schema import REQUEST_SCHEMA

    rng = np.random.default_rng(0)
    per_file = ROWS // (HOURS * FILES_PER_HOUR)
    start = int(now // 3600) * 3600 - (HOURS - 1) * 3600
    written = 0
    for hour in range(HOURS):
        hour_start = start + hour * 3600
        stamp = time.gmtime(hour_start)
        directory = root / "requests" / time.strftime("date=%Y-%m-%d/hour=%H", stamp)
        directory.mkdir(parents=True, exist_ok=True)
        for part in range(FILES_PER_HOUR):
            times = hour_start + np.sort(rng.uniform(0, min(3600, now - hour_start), per_file))
            ttft = rng.lognormal(3.5, 0.5, per_file)
            columns = {
                "request_id": [f"{hour:02d}{part:02d}{i:06d}" for i in range(per_file)],
                "time": pa.array((times * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
                "model": ["tandem-tiny"] * per_file, "model_version": [3] * per_file,
                "pool": rng.choice(["fast", "cheap"], per_file), "tier": ["standard"] * per_file,
                "stream": [True] * per_file, "prompt_tokens": rng.integers(5, 60, per_file),
                "completion_tokens": rng.integers(1, 64, per_file), "ttft_ms": ttft,
                "tpot_ms": rng.lognormal(2.0, 0.3, per_file), "e2e_ms": ttft * 10,
                "status": [200] * per_file, "cost_usd": [1e-6] * per_file,
                "routing_reason": ["cheapest meeting TTFT<=500ms TPOT<=50ms"] * per_file,
                "ttft_target_ms": [500.0] * per_file, "tpot_target_ms": [50.0] * per_file,
                "predicted_ttft_ms": ttft * rng.lognormal(0, 0.2, per_file),
                "predicted_tpot_ms": [7.0] * per_file, "predicted_slo_miss": [False] * per_file,
                "slo_met": [True] * per_file,
                "prompt": [f'[{{"role": "user", "content": "translate: word {i} =>"}}]'
                           for i in range(per_file)],
                "response": [" fipo zemu"] * per_file, "tenant": ["default"] * per_file,
            }
            table = pa.table({name: pa.array(columns[name], REQUEST_SCHEMA.field(name).type)
                              for name in REQUEST_SCHEMA.names}, schema=REQUEST_SCHEMA)
            pq.write_table(table, directory / f"part-{hour:02d}{part:02d}.parquet")
            written += per_file
    return written


def run_reader(body: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE.format(body=body), *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_readers_cost_their_window_not_the_logs_history(tmp_path):
    from tandem.routing.log import DecisionLog
    from tandem.routing.types import Decision, RequestFeatures

    rows = write_request_log(tmp_path / "telemetry", time.time())
    decisions = tmp_path / "decisions.jsonl"
    log = DecisionLog()
    log.record(time.time(), RequestFeatures(10, 5), Decision(pool="fast", reason="bench"), "r")
    decisions.write_text(log.to_jsonl())
    size_mb = sum(p.stat().st_size for p in (tmp_path / "telemetry").rglob("*.parquet")) / 1e6
    print(f"\nrequest log: {rows:,} rows, {HOURS} h x {FILES_PER_HOUR} files, {size_mb:.0f} MB")
    print(f"{'reader':<50} {'seconds':>8} {'peak RSS':>9}")
    measured = {}
    for name, body in READERS.items():
        measured[name] = run_reader(body, tmp_path / "telemetry", decisions)
        print(f"{name:<50} {measured[name]['seconds']:>8.2f} {measured[name]['peak_mb']:>6.0f} MB")
    explain = measured["route explain, now (last hour, 3 columns)"]
    before = measured["route explain, before (every column, whole log)"]
    print(f"route explain: {before['seconds'] / explain['seconds']:.1f}x faster, "
          f"{before['peak_mb'] / explain['peak_mb']:.1f}x less memory; target under "
          f"{TARGET_EXPLAIN_S:g} s (at 10 M rows)")
    assert explain["seconds"] < TARGET_EXPLAIN_S

"""Simulator speed on the whole 19k-request conversation trace, on one core.

Target: under 10 s of CPU time. Run: `pytest tests/bench/test_simulator_speed.py -s`.
"""

import time

from tandem.catalog import load_catalog
from tandem.perf import build_replica_model
from tandem.planner.simulator import Slo, simulate
from tandem.planner.trace import bundled_trace_path, load_trace


def test_full_conversation_trace_simulates_in_under_ten_seconds():
    catalog = load_catalog()
    model = catalog.model("llama-3.1-8b")
    trace = load_trace(bundled_trace_path()).scaled(20)
    pools = {"H100": (build_replica_model(catalog, "H100", model, "fp16"), 8),
             "L4": (build_replica_model(catalog, "L4", model, "fp16"), 20)}
    started = time.process_time()
    result = simulate(trace, pools, Slo(ttft_ms=2000, tpot_ms=100))
    elapsed = time.process_time() - started
    print(f"\n{len(trace)} requests, {sum(n for _, n in pools.values())} replicas: "
          f"{elapsed:.2f} s CPU ({len(trace) / elapsed:,.0f} requests/s), "
          f"attainment {result.slo_attainment:.4f}")
    assert result.served + result.rejected == len(trace)
    assert elapsed < 10

"""How well the router's TTFT predictions match what was measured, per pool, on the local
two-pool stack, at idle and under the live bench's mixed load; and what the ingress's
clock leaves out of the TTFT the client sees.

Each phase runs `DURATION_S` (per model) of closed-loop streaming load (`tandem.serve.loadgen`):
idle is one interactive client; mixed is one interactive and six batch clients. The
prediction is the one logged at decision time (`predicted_ttft_ms`), the measurement the
request log's `ttft_ms` (ingress clock: from the ingress receiving the request to the
pool's first chunk); the error is the median of |predicted - measured| / measured over
each pool's requests after its first `SKIP_FIRST`. Target: <= 20 % per pool.
Beside each error: that of always predicting the pool's measured median, the floor set by
the measurements' own spread. The client's TTFT (to its first SSE chunk with text) minus
the ingress's is what the ingress clock leaves out: the Serve proxy's share and the
client's own.
Both on the tiny model (apps/serve.local.yaml) and on the real one (SmolLM2-135M-Instruct,
bf16, the base alone on both pools of apps/serve.real.yaml).
Run: `.venv/bin/python -m pytest -s tests/bench/test_routing_calibration.py`
(`-k smollm2` for the real model alone)
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "tandem-serve"
# per phase: SmolLM2 on a 2-core machine answers a few requests a minute under the mixed
# load, and each pool needs more than `SKIP_FIRST`
DURATION_S = {"tiny": 60, "smollm2": 180}
SKIP_FIRST = 20
TARGET = 0.20


def _phase(stack, streams, model: str, seconds: int) -> tuple[dict, float | None]:
    from tandem.auth import client_key
    from tandem.routing.outcome import ttft_calibration
    from tandem.serve.loadgen import run_load
    from tandem.telemetry.request_log import read_requests

    results = run_load(stack.api_url, streams, seconds, model=model,
                       api_key=client_key(stack.home))
    time.sleep(4)  # the request log flushes every 2 s
    mine = {r.request_id: r for r in results if r.status == 200 and r.request_id}
    rows = [row for row in read_requests(stack.home / "telemetry").to_pylist()
            if row["request_id"] in mine]
    left_out = [mine[row["request_id"]].ttft_ms - row["ttft_ms"] for row in rows
                if row["ttft_ms"] is not None and mine[row["request_id"]].ttft_ms is not None]
    return ttft_calibration(rows, SKIP_FIRST), statistics.median(left_out) if left_out else None


def _config(model_name: str, stack, request):
    """The served model's config and registered name: the tiny base (`registered`), or
    SmolLM2's base on both pools."""
    from tandem.serve.config import load_serve_config

    from tests.integration.served_models import smollm2_base_config

    if model_name == "tiny":
        request.getfixturevalue("registered")
        return load_serve_config(REPO / "apps" / "serve.local.yaml",
                                 {"model": f"models:/{MODEL}@champion"}), MODEL
    return smollm2_base_config(stack)


@pytest.mark.parametrize("model_name", ["tiny", "smollm2"])
def test_ttft_predictions_against_measurements(stack, request, model_name):
    from tandem.serve.deploy import deploy, shutdown
    from tandem.serve.loadgen import Stream

    config, model = _config(model_name, stack, request)
    phases = {"idle": [Stream("interactive", 16, 1)],
              "mixed": [Stream("interactive", 16, 1), Stream("batch", 64, 6)]}
    table = {}
    deploy(config, stack, log=lambda _: None)
    try:
        for name, streams in phases.items():
            table[name] = _phase(stack, streams, model, DURATION_S[model_name])
    finally:
        shutdown(stack, log=lambda _: None)

    print(f"\n{model_name}")
    print(f"{'load':<6} {'pool':<6} {'requests':>8} {'median |err|':>12} {'pred p50 ms':>11} "
          f"{'meas p50 ms':>11} {'|err| of p50':>12}  target <= {TARGET:.0%}")
    for name, (calibration, _) in table.items():
        for row in calibration.values():
            verdict = "met" if row.median_error <= TARGET else "NOT met"
            print(f"{name:<6} {row.pool:<6} {row.requests:>8} {row.median_error:>12.1%} "
                  f"{row.predicted_p50_ms:>11.1f} {row.measured_p50_ms:>11.1f} "
                  f"{row.constant_error:>12.1%}  {verdict}")
    print("|err| of p50: the error of always predicting the pool's measured median TTFT (the "
          "measurements' own spread)")
    for name, (_, left_out) in table.items():
        print(f"{name}: client TTFT - ingress TTFT, median {left_out:.1f} ms"
              if left_out is not None else f"{name}: no streamed request measured")
    assert all(calibration for calibration, _ in table.values())

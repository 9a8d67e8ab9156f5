import csv

import pytest
from tandem.catalog import load_catalog
from tandem.errors import UserError
from tandem.perf import build_replica_model
from tandem.planner.fit import COLUMNS, fit_efficiency


def test_recovers_the_efficiency_that_generated_the_data(tmp_path, catalog):
    truth = tmp_path / "truth.yaml"
    truth.write_text("gpus:\n  L4:\n    efficiency: {compute: 0.45, bandwidth: 0.7, "
                     "step_overhead_ms: 3.0}\n")
    replica = build_replica_model(load_catalog(truth), "L4", catalog.model("llama-3.1-8b"),
                                  "fp16", tp=1)
    path = tmp_path / "measured.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for batch, prompt, context in [(1, 128, 500), (8, 512, 1000), (16, 1024, 2000),
                                       (4, 2048, 300)]:
            writer.writerow({
                "gpu": "L4", "model": "llama-3.1-8b", "precision": "fp16", "tp": 1,
                "batch_size": batch, "prompt_tokens": prompt, "context_tokens": context,
                "ttft_ms": (replica.overhead + replica.flop_per_token * prompt) * 1e3,
                "tpot_ms": replica.decode_step(batch, batch * context) * 1e3})
    fitted = fit_efficiency(path, catalog)["gpus"]["L4"]["efficiency"]
    assert fitted["bandwidth"] == pytest.approx(0.7, rel=1e-3)
    assert fitted["compute"] == pytest.approx(0.45, rel=1e-3)
    assert fitted["step_overhead_ms"] == pytest.approx(3.0, rel=1e-3)


def test_missing_columns_are_a_user_error(tmp_path, catalog):
    path = tmp_path / "m.csv"
    path.write_text("gpu,ttft_ms\nL4,3\n")
    with pytest.raises(UserError, match="lacks column"):
        fit_efficiency(path, catalog)

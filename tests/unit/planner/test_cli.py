import argparse
import json

import pytest
from tandem.errors import UserError
from tandem.planner import cli
from tandem.planner.trace import bundled_trace_path

KEYS = {"mix", "cost_per_hour", "slo_attainment", "homogeneous",
        "savings_vs_best_homogeneous", "simulated_requests"}


def run(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    lines = bundled_trace_path().read_text().splitlines()[:301]
    path = tmp_path_factory.mktemp("trace") / "small.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_plan_has_the_contract_keys(small_trace, tmp_path, capsys):
    code = run("--trace", str(small_trace), "--model", "llama-3.1-8b", "--ttft-slo-ms", "2000",
               "--tpot-slo-ms", "100", "--gpus", "H100,L4", "--rate-scale", "5",
               "--out", str(tmp_path), "--json")
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert KEYS <= set(plan)
    assert plan["simulated_requests"] == 300
    assert 0.99 <= plan["slo_attainment"] <= 1
    assert set(plan["homogeneous"]) == {"H100", "L4"}
    for fleet in plan["homogeneous"].values():
        assert set(fleet) == {"count", "cost_per_hour", "slo_attainment"}
    assert plan["cost_per_hour"] == pytest.approx(
        sum(plan["replica"][g]["price_per_hour"] * n for g, n in plan["mix"].items()))
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".md", ".png"}


@pytest.mark.parametrize("extra, message", [
    (["--model", "gpt-9"], "unknown model"),
    (["--model", "llama-3.1-8b", "--gpus", "TPU"], "unknown GPU"),
    (["--model", "llama-3.1-8b", "--ttft-slo-ms", "0"], "positive"),
    (["--model", "llama-3.1-8b", "--tpot-slo-ms", "-5"], "positive"),
    (["--model", "llama-3.1-8b", "--attainment", "1.5"], "attainment"),
    (["--model", "llama-3.1-8b", "--precision", "int3"], "unknown precision"),
])
def test_bad_arguments_are_user_errors(small_trace, tmp_path, extra, message):
    base = ["--trace", str(small_trace), "--ttft-slo-ms", "2000", "--tpot-slo-ms", "100",
            "--out", str(tmp_path), "--no-plot"]
    with pytest.raises(UserError, match=message):
        run(*base, *extra)


def test_bad_traces_are_user_errors(tmp_path):
    missing = tmp_path / "missing.csv"
    missing.write_text("TIMESTAMP,ContextTokens\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    for path, message in [(missing, "GeneratedTokens"), (empty, "no requests"),
                          (tmp_path / "absent.csv", "cannot read")]:
        with pytest.raises(UserError, match=message):
            run("--trace", str(path), "--model", "llama-3.1-8b", "--ttft-slo-ms", "2000",
                "--tpot-slo-ms", "100", "--out", str(tmp_path), "--no-plot")


def test_an_unreachable_slo_is_a_user_error(small_trace, tmp_path):
    with pytest.raises(UserError, match="no fleet meets"):
        run("--trace", str(small_trace), "--model", "llama-3.1-8b", "--ttft-slo-ms", "1",
            "--tpot-slo-ms", "1", "--gpus", "L4", "--out", str(tmp_path), "--no-plot")

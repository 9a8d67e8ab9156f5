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


@pytest.mark.parametrize("extra, message", [
    (["--available", "TPU=4"], "unknown GPU"),
    (["--owned", "H100=-1"], "non-negative integer"),
    (["--available", "H100=2.5"], "non-negative integer"),
    (["--tier", "chat:share=0.6,ttft_ms=400", "--tier", "bulk:share=0.3,tpot_ms=100"],
     "sum to 0.9"),
    (["--tier", "chat:share=1"], "no targets"),
    (["--emit-serve-config", "{file}/plan.yaml"], "cannot write"),
    (["--max-wait-s", "0"], "--max-wait-s must be a positive number of seconds, got 0"),
    (["--max-wait-s", "-5"], "--max-wait-s must be a positive number of seconds, got -5"),
    (["--max-wait-s", "inf"], "--max-wait-s must be a positive number of seconds, got inf"),
    (["--rate-scale", "nan"], "--rate-scale must be a positive number, got nan"),
    (["--rate-scale", "inf"], "--rate-scale must be a positive number, got inf"),
    (["--out", "{file}"], "is a file; --out names the report directory"),  # before planning
])
def test_bad_plan_input_exits_2_with_one_line(small_trace, tmp_path, capsys, extra, message):
    from tandem.cli import main

    extra = [arg.replace("{file}", str(small_trace)) for arg in extra]
    code = main(["plan", "--trace", str(small_trace), "--model", "llama-3.1-8b",
                 "--tpot-slo-ms", "100", "--out", str(tmp_path), "--no-plot", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_fit_efficiency_refuses_tensor_parallel_0(tmp_path, capsys):
    from tandem.cli import main
    from tandem.planner.fit import COLUMNS

    measured = tmp_path / "measured.csv"
    measured.write_text(",".join(COLUMNS) + "\nL4,llama-3.1-8b,fp16,0,1,128,500,50,20\n")
    assert main(["plan", "--fit-efficiency", str(measured), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tandem plan: {measured} line 2: tp must be at least 1, got 0"]


def test_a_max_wait_that_is_not_a_number_is_refused_without_a_traceback(small_trace, capsys):
    from tandem.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--trace", str(small_trace), "--model", "llama-3.1-8b",
              "--tpot-slo-ms", "100", "--max-wait-s", "soon"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "--max-wait-s: invalid float value: 'soon'" in err and "Traceback" not in err


def test_the_help_states_the_wait_bound_the_planner_applies():
    from tandem.planner.demand import MAX_WAIT_S

    assert cli.MAX_WAIT_HELP == MAX_WAIT_S


def test_tiers_owned_gpus_and_the_serve_config_come_out_of_one_plan(small_trace, tmp_path,
                                                                   capsys):
    from tandem.planner.report import render_table
    from tandem.serve.config import load_serve_config

    emitted = tmp_path / "plan.yaml"
    code = run("--trace", str(small_trace), "--model", "llama-3.1-8b", "--gpus", "H100,L4",
               "--tier", "chat:share=0.4,ttft_ms=1000,tpot_ms=60",
               "--tier", "bulk:share=0.6,tpot_ms=150", "--owned", "L4=1",
               "--rate-scale", "5", "--out", str(tmp_path), "--no-plot", "--json",
               "--emit-serve-config", str(emitted))
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["tiers"]) == {"chat", "bulk"}
    for tier in plan["tiers"].values():
        assert tier["slo_attainment"] >= 0.99 and set(tier["gpus"]) <= set(plan["mix"])
    assert plan["tiers"]["bulk"]["ttft_ms"] is None  # a TPOT-only tier
    assert plan["tiers"]["bulk"]["max_wait_s"] == 30 and plan["tiers"]["chat"]["max_wait_s"] is None
    table = render_table(plan)
    for name, tier in plan["tiers"].items():
        spread = tier["ttft_percentiles_ms"]
        assert 0 < spread["p50"] <= spread["p90"] <= spread["p99"]
        row = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert f"{spread['p50']:.0f}/{spread['p90']:.0f}/{spread['p99']:.0f}" in row
    assert plan["gpus"] == {gpu: n * plan["replica"][gpu]["tensor_parallel"]
                            for gpu, n in plan["mix"].items()}
    assert plan["owned"]["L4"]["owned"] == 1
    rented = {gpu: n - (plan["owned"]["L4"]["used"] if gpu == "L4" else 0)
              for gpu, n in plan["gpus"].items()}
    assert plan["cost_per_hour"] == pytest.approx(
        sum(plan["replica"][g]["price_per_hour"] * n for g, n in rented.items()), abs=1e-3)
    config = load_serve_config(emitted)
    assert {pool.gpu: pool.num_replicas for pool in config.pools.values()} == plan["mix"]
    assert config.routing_policy == "tandem" == plan["policy"]


def test_a_catalog_file_adds_a_gpu_type_and_its_price_reaches_the_serve_config(
        small_trace, tmp_path, capsys):
    from tandem.serve.config import load_serve_config

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("gpus:\n  B200:\n    vram_gb: 180\n    memory_bandwidth_tbps: 8.0\n"
                       "    tflops: {fp8: 4500, bf16: 2250, fp16: 2250}\n"
                       "    price_per_hour: 0.5\n    price_source: a test's own figure\n")
    emitted = tmp_path / "plan.yaml"
    code = run("--trace", str(small_trace), "--model", "llama-3.1-8b", "--gpus", "H100,B200",
               "--ttft-slo-ms", "2000", "--tpot-slo-ms", "100", "--rate-scale", "5",
               "--catalog", str(catalog), "--out", str(tmp_path), "--no-plot", "--json",
               "--emit-serve-config", str(emitted), "--policy", "least-loaded")
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["mix"] == {"B200": plan["mix"]["B200"]}  # faster and cheaper than an H100
    config = load_serve_config(emitted)
    assert [(p.gpu, p.price_per_hour) for p in config.pools.values()] == [("B200", 0.5)]
    assert config.routing_policy == "least-loaded"  # the fleet runs what it was planned with

"""`tandem watch` and `jobs/retrain_watch.py` refuse bad arguments before they touch the stack."""

import importlib.util
from pathlib import Path

import pytest
from tandem.cli import main

ROOT = Path(__file__).resolve().parents[2]
BAD_ARGUMENTS = [
    (["--interval", "0"], "interval_s: Input should be greater than 0"),
    (["--interval", "nan"], "interval_s"),
    (["--model", "../etc"], "model: String should match pattern"),
    (["--config", "no-such-watch.yaml"], "no-such-watch.yaml: no such config file"),
    (["--", "--quality.min_rated=0"], "quality.min_rated: Input should be greater than 0"),
    (["--", "--window=60"], "window: unknown key"),
    (["--", "--finetune_config=missing.yaml"], "missing.yaml: no such fine-tuning config"),
    (["--", "--feedback_scale=1..10"], "feedback_scale"),
]


@pytest.fixture
def at_root(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))


def retrain_watch_job():
    spec = importlib.util.spec_from_file_location("retrain_watch", ROOT / "jobs" / "retrain_watch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS)
def test_bad_arguments_are_user_errors(at_root, capsys, argv, message):
    assert main(["watch", "--once", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tandem watch: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS)
def test_the_ray_job_exits_2_on_the_same_bad_arguments(at_root, capsys, argv, message):
    assert retrain_watch_job().main(["--once", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("retrain_watch: ") and message in err and "Traceback" not in err


def test_it_must_run_from_the_project_root(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["watch", "--once"]) == 2
    assert "project root" in capsys.readouterr().err

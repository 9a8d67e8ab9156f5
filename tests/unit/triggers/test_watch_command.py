from pathlib import Path

import pytest
from tandem.cli import build_parser, main
from tandem.commands.watch import load_watch_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def at_root(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))


def parse(*argv):
    return build_parser().parse_args(["watch", *argv])


@pytest.mark.parametrize("argv, message", [
    (["--interval", "0"], "interval_s: Input should be greater than 0"),
    (["--interval", "nan"], "interval_s"),
    (["--model", "../etc"], "model: String should match pattern"),
    (["--config", "no-such-watch.yaml"], "no-such-watch.yaml: no such config file"),
    (["--", "--quality.min_rated=0"], "quality.min_rated: Input should be greater than 0"),
    (["--", "--window=60"], "window: unknown key"),
    (["--", "--finetune_config=missing.yaml"], "missing.yaml: no such fine-tuning config"),
    (["--", "--feedback_scale=1..10"], "feedback_scale"),
])
def test_bad_arguments_are_user_errors(at_root, capsys, argv, message):
    assert main(["watch", "--once", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tandem watch: ") and message in err and "Traceback" not in err


def test_it_must_run_from_the_project_root(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["watch", "--once"]) == 2
    assert "project root" in capsys.readouterr().err


def test_flags_override_the_yaml_and_the_yaml_overrides_defaults(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text("model: tandem-small\ninterval_s: 30\nnew_labels: {min_corrections: 8}\n")
    config = load_watch_config(parse("--config", str(path), "--interval", "5"))
    assert (config.model, config.interval_s, config.new_labels.min_corrections) == (
        "tandem-small", 5.0, 8)
    assert load_watch_config(parse("--model", "1.0")).model == "1.0"
    defaults = load_watch_config(parse())
    assert (defaults.model, defaults.interval_s, defaults.finetune_config) == (
        "tandem-tiny", 60.0, "jobs/configs/tiny.yaml")


def test_retrain_overrides_carry_data_and_lineage_into_the_finetune_config(tmp_path):
    from tandem.commands.watch import retrain_overrides
    from tandem.config import load_config
    from tandem.train.config import FinetuneConfig
    from tandem.triggers.policies import TriggerResult

    result = TriggerResult("quality", True, "retrain", "negative feedback 42% over last 50 "
                           "rated vs baseline 10% (threshold +20 pts); mean: -0.3 # x", "quality@7")
    data = tmp_path / "retrain data.jsonl"
    overrides = retrain_overrides("tandem-tiny", data, result, parent=3)
    config = load_config(FinetuneConfig, ROOT / "jobs/configs/tiny.yaml", overrides)
    assert config.train_data == [str(data)]
    assert config.trigger == f"quality: {result.reason}"
    assert config.trigger_window == "quality@7"
    assert config.base_model == "models:/tandem-tiny/3"
    assert load_config(FinetuneConfig, None, retrain_overrides(
        "tandem-tiny", data, result, parent=None)).base_model == "tiny"

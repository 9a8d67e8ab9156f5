from pathlib import Path

from tandem.config import load_config
from tandem.train.config import FinetuneConfig
from tandem.triggers.policies import TriggerResult
from tandem.watch.build import retrain_overrides

ROOT = Path(__file__).resolve().parents[3]


def test_retrain_overrides_carry_data_and_lineage_into_the_finetune_config(tmp_path):
    result = TriggerResult("quality", True, "retrain", "negative feedback 42% over last 50 "
                           "rated vs baseline 10% (threshold +20 pts); mean: -0.3 # x", "quality@7")
    data = tmp_path / "retrain data.jsonl"
    overrides = retrain_overrides("tandem-tiny", data, result, parent=3)
    config = load_config(FinetuneConfig, ROOT / "jobs/configs/tiny.yaml", overrides)
    assert config.train_data == [str(data)]
    assert config.trigger == f"quality: {result.reason}"
    assert config.trigger_window == "quality@7"
    assert config.base_model == "models:/tandem-tiny/3"
    assert config.eval_data == ["builtin:holdout"]  # the config's own, unless given
    validation = str(tmp_path / "retrain data.validation.jsonl")
    assert load_config(FinetuneConfig, None, retrain_overrides(
        "tandem-tiny", data, result, parent=3, eval_data=["builtin:holdout", validation]),
    ).eval_data == ["builtin:holdout", validation]
    assert load_config(FinetuneConfig, None, retrain_overrides(
        "tandem-tiny", data, result, parent=None)).base_model == "tiny"


def test_retraining_an_adapter_continues_the_parent_adapter_on_the_configured_base(tmp_path):
    result = TriggerResult("new_labels", True, "retrain", "40 corrections", "new_labels@2")
    overrides = retrain_overrides("tandem-tiny-support", tmp_path / "d.jsonl", result, parent=4,
                                  adapter=True)
    config = load_config(FinetuneConfig, ROOT / "jobs/configs/tiny-adapter.yaml", overrides)
    assert config.registers_adapter and config.registered_model == "tandem-tiny-support"
    assert config.lora.init_from == "models:/tandem-tiny-support/4"
    assert config.base_model == "models:/tandem-tiny@champion"  # the adapter's base stays


def test_the_distill_trigger_submits_the_champion_into_the_configured_student():
    from tandem.watch.build import distill_entrypoint
    from tandem.watch.config import load_watch_config

    config = load_watch_config(None, ['--distill={"student_model": "tandem-tiny-student", '
                                      '"min_answers": 500, "overrides": ["--train_sample=50"]}'])
    assert distill_entrypoint(config) == [
        "python", "jobs/distill.py", "--config", "jobs/configs/distill-tiny.yaml",
        "--teacher=models:/tandem-tiny@champion", "--student_model=tandem-tiny-student",
        "--train_sample=50"]

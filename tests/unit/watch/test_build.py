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
    assert load_config(FinetuneConfig, None, retrain_overrides(
        "tandem-tiny", data, result, parent=None)).base_model == "tiny"

import pytest
from tandem.errors import UserError
from tandem.watch.config import load_watch_config


def test_flags_override_the_yaml_and_the_yaml_overrides_defaults(tmp_path):
    path = tmp_path / "watch.yaml"
    path.write_text("model: tandem-small\ninterval_s: 30\nnew_labels: {min_corrections: 8}\n")
    config = load_watch_config(path, ["--interval_s=10"], interval_s=5)
    assert (config.model, config.interval_s, config.new_labels.min_corrections) == (
        "tandem-small", 5.0, 8)
    assert load_watch_config(path, ["--interval_s=10"]).interval_s == 10.0
    assert load_watch_config(None, model="1.0").model == "1.0"
    defaults = load_watch_config(None)
    assert (defaults.model, defaults.interval_s, defaults.finetune_config) == (
        "tandem-tiny", 60.0, "jobs/configs/tiny.yaml")


def test_corrections_kept_out_for_validation_and_the_rollout_must_leave_some_to_train_on():
    config = load_watch_config(None, ["--validation_share=0.3"])
    assert (config.validation_share, config.rollout.feedback_holdout_share) == (0.3, 0.2)
    with pytest.raises(UserError, match="no correction would be left to retrain on"):
        load_watch_config(None, ["--validation_share=0.8"])

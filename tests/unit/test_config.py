import pytest
from tandem.config import load_config, parse_overrides
from tandem.errors import UserError
from tandem.train.config import FinetuneConfig


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_overrides_parse_yaml_values_and_nest():
    assert parse_overrides(["--epochs=4", "--lora.rank=16", "--mode=lora", "--use-gpu=true"]) == {
        "epochs": 4, "lora": {"rank": 16}, "mode": "lora", "use_gpu": True}


@pytest.mark.parametrize("bad", ["epochs=4", "--epochs", "--=3"])
def test_malformed_override_is_a_user_error(bad):
    with pytest.raises(UserError, match="override"):
        parse_overrides([bad])


def test_overrides_win_over_file(tmp_path):
    config = load_config(FinetuneConfig, write(tmp_path, "epochs: 2\nmode: full\n"), ["--epochs=5"])
    assert config.epochs == 5 and config.mode == "full"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(UserError, match=r"config.yaml: epoch: unknown key"):
        load_config(FinetuneConfig, write(tmp_path, "epoch: 2\n"))


def test_unknown_nested_key_is_named(tmp_path):
    with pytest.raises(UserError, match=r"lora.rnk: unknown key"):
        load_config(FinetuneConfig, write(tmp_path, "lora: {rnk: 4}\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(UserError, match=r"epochs: "):
        load_config(FinetuneConfig, write(tmp_path, "epochs: many\n"))


@pytest.mark.parametrize("text,match", [
    ("- a\n- b\n", "mapping"), ("epochs: [1\n", "invalid YAML"), ("precision: fp64\n", "precision")])
def test_bad_files(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_config(FinetuneConfig, write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(FinetuneConfig, tmp_path / "nope.yaml")


def test_config_hash_is_stable_and_sensitive():
    a, b = FinetuneConfig(), FinetuneConfig()
    assert a.config_hash() == b.config_hash()
    assert FinetuneConfig(epochs=7).config_hash() != a.config_hash()

from pathlib import Path

import pytest
from tandem.errors import UserError
from tandem.settings import load_settings


def test_defaults_bind_loopback_on_contract_ports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.host == "127.0.0.1"
    assert (settings.api_port, settings.mlflow_port, settings.dashboard_port, settings.ray_port) == (
        8000, 5000, 8265, 6379)
    assert settings.home == (tmp_path / ".tandem").resolve()


def test_home_is_made_absolute_and_reaches_service_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"TANDEM_HOME": "rel/home", "TANDEM_MLFLOW_PORT": "5123"})
    assert settings.home.is_absolute()
    assert settings.home == tmp_path / "rel" / "home"
    env = settings.service_env()
    assert env["TANDEM_HOME"] == str(tmp_path / "rel" / "home")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    assert load_settings(env).home == settings.home


def test_bad_port_names_the_variable():
    with pytest.raises(UserError, match="TANDEM_API_PORT"):
        load_settings({"TANDEM_API_PORT": "eighty"})


def test_paths_live_under_home():
    settings = load_settings({"TANDEM_HOME": "/srv/tandem"})
    for path in (settings.run_dir, settings.models_dir, settings.checkpoints_dir):
        assert Path("/srv/tandem") in path.parents


def test_model_dirs_are_a_list_made_absolute_and_reach_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"TANDEM_HOME": "home", "TANDEM_MODEL_DIRS": "ckpt,/data/models"})
    assert settings.model_dirs == [tmp_path / "ckpt", Path("/data/models")]
    assert settings.allowed_model_dirs == [tmp_path / "home" / "models", *settings.model_dirs]
    assert load_settings(settings.service_env()).model_dirs == settings.model_dirs
    assert load_settings({}).model_dirs == []


def test_an_external_mlflow_url_replaces_the_stacks_own_and_reaches_jobs():
    assert load_settings({"TANDEM_MLFLOW_PORT": "5123"}).mlflow_url == "http://127.0.0.1:5123"
    settings = load_settings({"TANDEM_MLFLOW_URI": "http://tandem-mlflow:5000"})
    assert settings.mlflow_url == "http://tandem-mlflow:5000"
    assert settings.service_env()["MLFLOW_TRACKING_URI"] == "http://tandem-mlflow:5000"
    assert load_settings(settings.service_env()).mlflow_url == "http://tandem-mlflow:5000"

"""The tiny base model, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tandem.models.tiny import resolve_base_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = resolve_base_model("tiny", tmp_path_factory.mktemp("models"))
    assert isinstance(path, Path)
    return path

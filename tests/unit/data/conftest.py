"""Fixtures for data tests: the task tokenizer, trained once per session (milliseconds)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def task_tokenizer() -> Any:
    from tandem.models.tiny import train_tokenizer

    return train_tokenizer()

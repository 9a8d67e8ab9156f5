"""Model directories built once and reused: the tiny models and converted packaged ones.

A `tandem_build.json` holding the hash of what determined a build marks a complete one. A
build happens in a temporary sibling directory that is renamed into place, so a concurrent
caller never sees half a model, and a stale or broken build is moved aside first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUILD_MARKER = "tandem_build.json"
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    BUILD_MARKER,
)


def spec_hash(spec: dict[str, Any]) -> str:
    """The hash of what determines a build."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def is_complete_build(model_dir: Path, expected_hash: str) -> bool:
    """Whether `model_dir` holds every file of a finished build of `expected_hash`."""
    if not all((model_dir / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        marker = json.loads((model_dir / BUILD_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("spec_hash") == expected_hash


def build_once(out_dir: Path, expected_hash: str, save: Callable[[Path], None],
               spec: dict[str, Any]) -> Path:
    """`out_dir` holding a complete build of `expected_hash`: reused when it does, else
    `save(staging_dir)` writes the model files and the directory is renamed into place with
    a marker recording `spec`."""
    out_dir = Path(out_dir).absolute()
    if is_complete_build(out_dir, expected_hash):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        save(staging)
        marker = {"spec_hash": expected_hash, "spec": spec}
        (staging / BUILD_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        if out_dir.exists() and not is_complete_build(out_dir, expected_hash):
            stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.stale-", dir=out_dir.parent))
            os.replace(out_dir, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, out_dir)
        except OSError:
            # Another caller renamed its build in first; theirs is as good as ours.
            if not is_complete_build(out_dir, expected_hash):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir

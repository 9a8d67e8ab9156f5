"""Typed, strict configs loaded from YAML plus `--key=value` overrides.

Every entrypoint (jobs, Serve apps) has one pydantic model with
`extra="forbid"`; this module turns a YAML file and command-line overrides
into that model, and any mistake into a one-line `UserError` naming the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tandem.errors import UserError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base for entrypoint configs: unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def config_hash(self) -> str:
        """Stable short hash of the effective config, recorded as lineage."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `["--lr=1e-3", "--lora.rank=8"]` into a nested dict of YAML values."""
    result: dict[str, Any] = {}
    for item in overrides:
        if not item.startswith("--") or "=" not in item:
            raise UserError(f"override {item!r}: expected --key=value")
        key, raw_value = item[2:].split("=", 1)
        if not key:
            raise UserError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw_value) if raw_value != "" else ""
        except yaml.YAMLError:
            value = raw_value
        node = result
        *parents, leaf = key.replace("-", "_").split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part} is not a section")
        node[leaf] = value
    return result


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it; nested mappings merge key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{source}: {key}: {message}"


def load_config(
    model: type[ConfigT], path: str | Path | None, overrides: list[str] | None = None
) -> ConfigT:
    """Load `path` (YAML) into `model`, apply overrides, validate strictly."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: cannot read config ({error})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserError(f"{path}: invalid YAML ({error})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
    data = merge_dicts(data, parse_overrides(overrides or []))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, source)) from None

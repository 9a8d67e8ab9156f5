"""GPU specs, prices and model shapes: the facts the planner and the router price with.

They live in one data file (`assets/catalog.yaml`) so a price or a datasheet figure
changes in one place; a user file with the same layout overrides any field, because
prices are inputs that differ per provider and contract, not truths. Precision and
tensor-parallel choices are here too: both are facts about a (GPU, model) pair that
every consumer must agree on.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tandem.config import merge_dicts
from tandem.errors import UserError

Precision = Literal["fp8", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp8", "fp16", "bf16")
BYTES_PER_ELEMENT: dict[str, float] = {"fp8": 1.0, "fp16": 2.0, "bf16": 2.0}
# Best first: the order a fallback tries when a GPU lacks the requested precision.
_FALLBACK_ORDER: dict[str, tuple[str, ...]] = {
    "fp8": ("fp8", "bf16", "fp16"),
    "fp16": ("fp16", "bf16"),
    "bf16": ("bf16", "fp16"),
}
TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8)
GPU_MEMORY_UTILIZATION = 0.90  # vLLM's default share of VRAM for weights + KV cache
MIN_USEFUL_KV_TOKENS = 32_768  # a replica whose cache holds less cannot batch usefully


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Efficiency(_Strict):
    """Fractions of datasheet peaks a serving engine reaches, and per-iteration overhead."""

    compute: float = Field(0.6, gt=0, le=1, description="Achieved share of peak TFLOPS.")
    bandwidth: float = Field(0.8, gt=0, le=1, description="Achieved share of peak bandwidth.")
    step_overhead_ms: float = Field(1.0, ge=0, description="Fixed cost of one engine iteration.")


class GpuSpec(_Strict):
    """One GPU type, named as Ray names accelerators (`H100`, `A100-80G`, ...)."""

    name: str = Field(description="Ray accelerator name; filled from the catalog key.")
    description: str = Field("", description="Human-readable part name.")
    vram_gb: float = Field(gt=0, description="Device memory in decimal GB.")
    memory_bandwidth_tbps: float = Field(gt=0, description="Peak memory bandwidth, TB/s.")
    tflops: dict[str, float] = Field(description="Dense peak TFLOPS per supported precision.")
    price_per_hour: float = Field(gt=0, description="USD per GPU-hour.")
    price_source: str = Field(description="Where the price comes from (URL or document).")
    spec_source: str = Field("", description="Where the specs come from.")
    tp_efficiency: float = Field(
        0.9, gt=0, le=1, description="Throughput kept per GPU when a replica spans several.")
    efficiency: Efficiency | None = Field(
        None, description="Fitted efficiency; None uses the catalog default.")


class ModelProfile(_Strict):
    """The shape of a decoder-only transformer, enough to price its weights and KV cache."""

    name: str = Field(description="Short lowercase name, e.g. `llama-3.1-8b`.")
    params_b: float = Field(gt=0, description="Parameters, billions.")
    layers: int = Field(gt=0, description="Transformer blocks.")
    hidden_size: int = Field(gt=0, description="Model width.")
    attention_heads: int = Field(gt=0, description="Query heads.")
    kv_heads: int = Field(gt=0, description="Key/value heads (GQA).")
    head_dim: int = Field(gt=0, description="Width of one attention head.")
    context_length: int = Field(gt=0, description="Longest sequence (prompt + output).")
    source: str = Field("", description="Where the shape comes from.")

    def weight_bytes(self, precision: str) -> float:
        return self.params_b * 1e9 * BYTES_PER_ELEMENT[precision]

    def kv_bytes_per_token(self, precision: str) -> float:
        """Keys and values of one token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_ELEMENT[precision]


class Catalog(_Strict):
    gpus: dict[str, GpuSpec]
    models: dict[str, ModelProfile]
    default_efficiency: Efficiency = Efficiency()

    def gpu(self, name: str) -> GpuSpec:
        try:
            return self.gpus[name]
        except KeyError:
            raise UserError(
                f"unknown GPU {name!r}; known: {', '.join(sorted(self.gpus))}") from None

    def model(self, name_or_path: str) -> ModelProfile:
        """A catalog profile by name, or one derived from a Hugging Face config.json path."""
        if name_or_path in self.models:
            return self.models[name_or_path]
        path = Path(name_or_path)
        if path.is_dir():
            path = path / "config.json"
        if path.suffix == ".json" and path.is_file():
            return model_from_hf_config(path)
        raise UserError(
            f"unknown model {name_or_path!r}; known: {', '.join(sorted(self.models))} "
            "(or pass a Hugging Face config.json)")

    def efficiency(self, gpu: GpuSpec) -> Efficiency:
        return gpu.efficiency or self.default_efficiency


class PrecisionChoice(_Strict):
    """The precision a GPU actually runs, and why it differs from the request, if it does."""

    requested: str
    effective: str
    note: str = ""


def resolve_precision(gpu: GpuSpec, requested: str) -> PrecisionChoice:
    """Fall back to the GPU's best supported precision (e.g. FP8 on A100 -> BF16)."""
    if requested not in _FALLBACK_ORDER:
        raise UserError(f"unknown precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    for candidate in _FALLBACK_ORDER[requested]:
        if gpu.tflops.get(candidate):
            note = "" if candidate == requested else (
                f"{gpu.name} has no {requested.upper()} support; planned in {candidate.upper()}")
            return PrecisionChoice(requested=requested, effective=candidate, note=note)
    raise UserError(f"{gpu.name} supports none of {', '.join(_FALLBACK_ORDER[requested])}")


def kv_capacity_tokens(gpu: GpuSpec, model: ModelProfile, precision: str, tp: int) -> int:
    """Tokens of KV cache a replica of `tp` GPUs holds after its weights."""
    usable = gpu.vram_gb * 1e9 * GPU_MEMORY_UTILIZATION * tp
    free = usable - model.weight_bytes(precision)
    return max(0, int(free // model.kv_bytes_per_token(precision)))


def choose_tensor_parallel(gpu: GpuSpec, model: ModelProfile, precision: str) -> int | None:
    """Smallest TP degree whose replica fits the weights plus a useful KV cache.

    Useful means the cache holds `MIN_USEFUL_KV_TOKENS` tokens, or the whole context when
    that is shorter; None when even 8 GPUs do not suffice.
    """
    need = min(MIN_USEFUL_KV_TOKENS, model.context_length)
    for tp in TP_DEGREES:
        fits = kv_capacity_tokens(gpu, model, precision, tp) >= need
        if fits and model.attention_heads % tp == 0:
            return tp
    return None


def model_from_hf_config(path: Path, name: str | None = None) -> ModelProfile:
    """Derive a profile from a Hugging Face `config.json` (Llama, Qwen2, Mistral style)."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read model config {path}: {error}") from None
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        intermediate = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        context = int(config.get("max_position_embeddings") or 4096)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"model config {path}: missing or bad field {error}") from None
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * intermediate  # gated MLP: gate, up, down
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    params = layers * (attention + mlp) + embeddings
    return ModelProfile(
        name=name or config.get("_name_or_path") or Path(path).parent.name or "custom",
        params_b=params / 1e9, layers=layers, hidden_size=hidden, attention_heads=heads,
        kv_heads=kv_heads, head_dim=head_dim, context_length=context, source=str(path))


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise UserError(f"cannot read catalog file {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UserError(f"catalog file {path} is not valid YAML/JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"catalog file {path}: expected a mapping at the top level")
    return data


def _build(data: dict[str, Any], origin: str) -> Catalog:
    data = dict(data)
    for section in ("gpus", "models"):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise UserError(f"catalog {origin}: `{section}` must be a mapping")
        data[section] = {key: {**value, "name": key} for key, value in entries.items()
                         if isinstance(value, dict)}
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"catalog {origin}: {where}: {first['msg']}") from None


def default_catalog_data() -> dict[str, Any]:
    text = resources.files("tandem").joinpath("assets/catalog.yaml").read_text()
    return yaml.safe_load(text)


def load_catalog(override: Path | str | None = None) -> Catalog:
    """The shipped catalog, with a user YAML/JSON file's keys merged over it."""
    data = default_catalog_data()
    origin = "assets/catalog.yaml"
    if override is not None:
        data = merge_dicts(data, _read_mapping(Path(override)))
        origin = str(override)
    return _build(data, origin)


"""The serving config: which model, which pools, what each pool costs.

One strict pydantic model (`ServeAppConfig`) is the `args` of the Serve apps in
`apps/llm_app.py` and the `tandem` section of `apps/serve.*.yaml`. A pool is a
set of replicas of one model on one hardware type with a price per hour; it
becomes one `ray.serve.llm` LLMServer deployment per model version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from tandem.config import StrictConfig, describe_validation_error
from tandem.errors import UserError
from tandem.perf import POOL_MAX_NUM_SEQS
from tandem.routing.config import RoutingConfig

CPU = "cpu"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class Autoscaling(StrictConfig):
    """Ray Serve autoscaling of one pool's replicas."""

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle.")
    max_replicas: int = Field(1, ge=1, description="Upper bound on replicas.")
    target_ongoing_requests: float = Field(16, gt=0, description="Requests per replica to aim for.")
    cold_start_s: float = Field(
        120.0, gt=0, description="With min_replicas 0: the expected time from no replica to "
        "one serving. The router adds it to a cold pool's predicted TTFT (a request whose "
        "target that would break goes to a warm pool) until it has measured a cold start.")

    def serve_options(self) -> dict[str, Any]:
        """Ray Serve's `autoscaling_config` (the router's fields left out)."""
        return self.model_dump(exclude={"cold_start_s"})


class EngineSettings(StrictConfig):
    """vLLM engine arguments of a pool (passed as `engine_kwargs`)."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and activations dtype.")
    quantization: Literal["fp8"] | None = Field(
        None, description="Weight quantization; fp8 only on GPUs that support it (H100, H200, L4).")
    max_model_len: int = Field(128, gt=0, description="Context length (prompt + output tokens).")
    max_num_seqs: int = Field(POOL_MAX_NUM_SEQS, gt=0,
                              description="Sequences batched per engine step.")
    kv_cache_memory_bytes: int | None = Field(
        None, gt=0, description="KV cache size; required on CPU (vLLM's GPU share is meaningless there).")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of VRAM for weights + KV cache (GPU pools).")
    enforce_eager: bool = Field(True, description="No CUDA graphs / compile (fast start on CPU).")
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one replica spans; 1 on cpu pools. A GPU pool's default "
        "price is the catalog's GPU-hour price times this.")
    cpu_threads: str | None = Field(
        None, description="CPU pools: cores the engine's OpenMP threads bind to "
        "(VLLM_CPU_OMP_THREADS_BIND, e.g. '0-1' or '1').")

    def engine_kwargs(self) -> dict[str, Any]:
        kwargs = self.model_dump(exclude_none=True, exclude={"cpu_threads"})
        return kwargs


class PoolAdapters(StrictConfig):
    """LoRA adapters on a pool's engines (vLLM's `enable_lora`): the config's `adapters` are
    served here beside the base model, loaded into the running engines on first use."""

    max_adapters: int = Field(4, ge=1, description="Adapters one engine keeps loaded and mixes "
                              "in one batch (vLLM's max_loras; Ray Serve's adapters per replica).")
    max_rank: Literal[8, 16, 32, 64, 128, 256] = Field(
        8, description="Largest LoRA rank served (vLLM's max_lora_rank; memory is reserved "
        "for it).")

    def engine_kwargs(self) -> dict[str, Any]:
        return {"enable_lora": True, "max_loras": self.max_adapters,
                "max_cpu_loras": self.max_adapters, "max_lora_rank": self.max_rank}


class LatencyPrior(StrictConfig):
    """Idle latency the router assumes for a pool before it has observed any request."""

    ttft_ms: float = Field(gt=0, description="Time to first token of a short prompt, idle.")
    tpot_ms: float = Field(gt=0, description="Time per output token, idle.")


class TelemetryConfig(StrictConfig):
    """Where the ingress records requests and feedback, and what it keeps."""

    root: str | None = Field(None, description="Directory or pyarrow filesystem URI; default "
                             "$TANDEM_HOME/telemetry.")
    log_text: bool = Field(True, description="Keep prompt and response text in the request log.")
    flush_rows: int = Field(256, gt=0, description="Write the buffer once this many records wait.")
    flush_interval_s: float = Field(2.0, gt=0, description="...or after this long: the most "
                                    "traffic a crash can lose.")
    max_buffered_rows: int = Field(20_000, gt=0, description="Records the ingress holds while "
                                   "the store fails; past it the oldest are dropped and counted.")
    max_buffered_bytes: int = Field(32 * 1024 * 1024, gt=0, description="...and about this "
                                    "much memory (text plus a fixed per-record estimate).")
    feedback_scale: Literal["-1..1", "1..5"] = Field("-1..1", description="Score scale of "
                                                     "POST /v1/feedback.")


class PoolConfig(StrictConfig):
    """One serving pool: hardware, size, engine settings and price."""

    gpu: str = Field(CPU, description="Ray accelerator type (H100, H200, A100-80G, L4) or 'cpu' "
                     "for a local pool pinned to its Ray node by resource `pool:<node>`.")
    price_per_hour: float | None = Field(
        None, gt=0, description="USD per replica-hour (the router prices with it). Required for "
        "cpu pools; a GPU pool without one is priced from the catalog: the GPU's price per "
        "GPU-hour times `engine.tensor_parallel_size`. Always set after validation.")
    node: str | None = Field(
        None, description="cpu pools: the local Ray node the replicas run on (resource "
        "`pool:<node>`); default the pool's own name. Pools may share a node.")
    num_replicas: int = Field(1, ge=1, description="Fixed replica count (ignored with autoscaling).")
    autoscaling: Autoscaling | None = Field(None, description="Autoscale replicas instead.")
    max_ongoing_requests: int = Field(64, gt=0, description="Requests one replica accepts at once.")
    engine: EngineSettings = Field(default_factory=EngineSettings, description="vLLM settings.")
    adapters: PoolAdapters | None = Field(
        None, description="Serve the config's LoRA `adapters` on this pool too (the base model "
        "is served either way); pools without it serve the base alone.")
    prior: LatencyPrior | None = Field(
        None, description="The router's starting latency estimate; required for cpu pools "
        "(GPU pools derive theirs from the catalog and `model_profile`).")
    overhead_ms: float = Field(
        10.0, ge=0, description="The serving path's fixed share of each request's TTFT (proxy, "
        "ingress, engine admission): the router's prior for it, then learned. Part of a cpu "
        "pool's `prior.ttft_ms`; added to a GPU pool's catalog roofline.")
    replica_router: Literal["pow2", "prefix-cache"] = Field(
        "pow2", description="How Serve picks one of the pool's replicas: `pow2` (Serve's "
        "power of two choices) or `prefix-cache` (Ray Serve LLM's PrefixCacheAffinityRouter: "
        "prompts sharing a prefix go to the replica that cached it); needs more than one replica.")

    @field_validator("node")
    @classmethod
    def _plain_node_name(cls, value: str | None) -> str | None:
        if value is not None and not is_plain_name(value):
            raise ValueError(f"node {value!r}: letters, digits, - and _ only")
        return value

    @model_validator(mode="after")
    def _settings_fit_the_hardware(self) -> PoolConfig:
        if self.gpu == CPU and self.engine.kv_cache_memory_bytes is None:
            raise ValueError("a cpu pool needs engine.kv_cache_memory_bytes")
        if self.gpu == CPU and self.engine.quantization:
            raise ValueError("fp8 quantization needs a GPU pool")
        if self.gpu == CPU and self.engine.tensor_parallel_size != 1:
            raise ValueError("engine.tensor_parallel_size must be 1 on a cpu pool")
        if self.gpu != CPU and self.engine.cpu_threads:
            raise ValueError("engine.cpu_threads applies to cpu pools only")
        if self.gpu != CPU and self.node is not None:
            raise ValueError("`node` applies to cpu pools only (GPU pools are placed by `gpu`)")
        if self.replica_router == "prefix-cache" and self.max_replicas == 1:
            raise ValueError("replica_router prefix-cache needs more than one replica "
                             "(num_replicas, or autoscaling.max_replicas)")
        return self

    @model_validator(mode="after")
    def _price_from_catalog(self) -> PoolConfig:
        """Every reader of `price_per_hour` (router, route table, rent gauges) sees a number."""
        if self.price_per_hour is None:
            if self.gpu == CPU:
                raise ValueError("a cpu pool needs price_per_hour (the catalog prices GPUs only)")
            self.price_per_hour = catalog_price_per_hour(self.gpu, self.engine.tensor_parallel_size)
        return self

    @property
    def is_cpu(self) -> bool:
        return self.gpu == CPU

    @property
    def max_replicas(self) -> int:
        """The most replicas the pool can run."""
        return self.autoscaling.max_replicas if self.autoscaling else self.num_replicas


class LimitsConfig(StrictConfig):
    """What the ingress lets through before answering 429 or 503 (rate limits and queues
    hold for the whole deployment, every ingress replica together)."""

    requests_per_s: float = Field(50.0, gt=0, description="Default per-key rate limit (token "
                                  "bucket refill); a key in the key file may set its own. With "
                                  "N ingress replicas at most (N-1) x (burst + requests_per_s "
                                  "x 1 s) beyond it are admitted.")
    burst: float = Field(100.0, ge=1, description="Default per-key bucket size.")
    max_queued_requests: int = Field(
        64, ge=1, description="Requests one pool replica may hold waiting beyond its batch "
        "slots: a pool that full is skipped, and when every pool is, the request gets 503 with "
        "Retry-After instead of a connection that hangs (sets the router's "
        "`max_queued_per_replica`).")


class StudentConfig(StrictConfig):
    """A smaller model served under the served model's name on some of its pools."""

    model: str = Field(description="Registry URI of the student (models:/NAME@ALIAS), a model "
                       "distilled from `model` (jobs/distill.py).")
    pools: list[str] = Field(min_length=1, description="Pools that serve the student instead "
                             "of the teacher.")


class ServeAppConfig(StrictConfig):
    """Args of `apps/llm_app.py:build_app` (the Tandem ingress + its pools)."""

    model: str = Field("models:/tandem-tiny@champion", description="Registry URI served by every pool.")
    adapters: list[str] = Field(
        default_factory=list, description="Registered LoRA adapters (models:/NAME@ALIAS) served "
        "on the pools with `adapters` set, each under its own model name. Each must have been "
        "trained on the version of `model` served (its tandem.adapter_base tag).")
    students: list[StudentConfig] = Field(
        default_factory=list, description="Smaller models that answer for `model` under its "
        "name on their own pools, for the requests whose quality floor they reach "
        "(tandem.quality.<tier> on their versions; live feedback once rated).")
    pools: dict[str, PoolConfig] = Field(min_length=1, description="Pool name -> pool.")
    routing_policy: Literal["tandem", "least-loaded", "round-robin"] = Field(
        "tandem", description="How the ingress picks a pool per request: `tandem` is the "
        "cheapest pool predicted to meet the request's latency targets.")
    routing: RoutingConfig | None = Field(
        None, description="Tier targets and budgets; default: local CPU presets when every "
        "pool is cpu, else GPU presets.")
    model_profile: str | None = Field(
        None, description="Catalog model profile (e.g. llama-3.1-8b) the GPU pools' latency "
        "priors are computed for: the shape of `model` (a fine-tune of that base). Only a "
        "registered name that names another catalog family or size is caught "
        "(`support-qwen-7b` as llama-3.1-8b); `tandem-tiny` as llama-3.1-8b is not.")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig,
                                       description="Request log and feedback.")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, description="Larger request bodies get 413.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Rate and queue limits.")
    ingress_replicas: int = Field(1, ge=1, description="Replicas of the ingress deployment.")
    swap_timeout_s: float = Field(600, gt=0, description="promote/rollback give up after this long.")
    drain_timeout_s: float | None = Field(
        None, gt=0, description="How long a retired version's pool may finish its in-flight "
        "requests before it is deleted (what is left is cut); default: the longest generation "
        "the pool allows at its measured TPOT, x1.5, at least 10 s.")

    @field_validator("model")
    @classmethod
    def _registry_uri(cls, value: str) -> str:
        """Only registered models are served: no local paths, no URLs, no hub ids."""
        from tandem.registry import MODEL_URI

        if not MODEL_URI.match(value):
            raise ValueError(f"{value!r} is not a registry URI (models:/NAME@ALIAS or "
                             "models:/NAME/VERSION)")
        return value

    @field_validator("adapters")
    @classmethod
    def _adapter_uris(cls, values: list[str]) -> list[str]:
        for value in values:
            cls._registry_uri(value)
        return values

    @model_validator(mode="after")
    def _adapters_have_pools(self) -> ServeAppConfig:
        from tandem.registry import parse_model_uri

        names = [parse_model_uri(uri)[0] for uri in self.adapters]
        if parse_model_uri(self.model)[0] in names:
            raise ValueError("an adapter cannot have the served model's name")
        if len(set(names)) < len(names):
            raise ValueError("adapters: each registered adapter may be listed once")
        if self.adapters and not self.adapter_pools():
            raise ValueError("adapters are listed but no pool sets `adapters` "
                             "(pools.<name>.adapters: {max_adapters: N})")
        most = min((self.pools[pool].adapters.max_adapters for pool in self.adapter_pools()),
                   default=0)
        if self.adapters and len(self.adapters) > most:
            raise ValueError(f"{len(self.adapters)} adapters listed but a pool keeps at most "
                             f"{most} loaded (pools.<name>.adapters.max_adapters)")
        return self

    @model_validator(mode="after")
    def _students_have_their_own_pools(self) -> ServeAppConfig:
        from tandem.registry import parse_model_uri

        names = [parse_model_uri(self.model)[0]] + [parse_model_uri(uri)[0] for uri in self.adapters]
        taken: dict[str, str] = {}
        for student in self.students:
            self._registry_uri(student.model)
            name = parse_model_uri(student.model)[0]
            if name in names:
                raise ValueError(f"students: {name} is listed twice or is the served model "
                                 "or an adapter")
            names.append(name)
            for pool in student.pools:
                if pool not in self.pools:
                    raise ValueError(f"students: {name}'s pool {pool!r} is not in pools "
                                     f"({', '.join(self.pools)})")
                if pool in taken:
                    raise ValueError(f"students: pool {pool!r} is given to both {taken[pool]} "
                                     f"and {name}")
                if self.pools[pool].adapters is not None:
                    raise ValueError(f"students: pool {pool!r} serves adapters of the teacher; "
                                     "a student's pool cannot")
                taken[pool] = name
        if self.students and not self.teacher_pools():
            raise ValueError("students take every pool: leave at least one for `model`")
        return self

    def teacher_pools(self) -> list[str]:
        """The pools serving `model` itself (all but the students')."""
        given = {pool for student in self.students for pool in student.pools}
        return [name for name in self.pools if name not in given]

    def adapter_pools(self) -> list[str]:
        """The pools whose engines serve the adapters."""
        return [name for name, pool in self.pools.items() if pool.adapters is not None]

    @model_validator(mode="after")
    def _pool_names(self) -> ServeAppConfig:
        for name, pool in self.pools.items():
            if not is_plain_name(name):
                raise ValueError(f"pool name {name!r}: letters, digits, - and _ only")
            if self.routing_policy == "tandem" and pool.prior is None and (
                    pool.is_cpu or self.model_profile is None):
                raise ValueError(f"pool {name!r} needs a latency `prior` (or, on a GPU, "
                                 "`model_profile`) for the tandem routing policy")
        return self

    @model_validator(mode="after")
    def _profile_fits_the_model(self) -> ServeAppConfig:
        """The router predicts the latency of `model_profile`: a served model whose name says
        it is another model would be routed on wrong predictions."""
        from tandem.registry import parse_model_uri

        profiles = _catalog().models
        if self.model_profile in profiles:
            conflict = profile_conflict(parse_model_uri(self.model)[0], self.model_profile, profiles)
            if conflict:
                raise ValueError(f"model {self.model!r} {conflict} but model_profile is "
                                 f"{self.model_profile!r}: set the profile of the model served")
        return self

    def routing_config(self) -> RoutingConfig:
        if self.routing is not None:
            routing = self.routing
        elif all(pool.is_cpu for pool in self.pools.values()):
            routing = RoutingConfig.local_cpu_defaults()
        else:
            routing = RoutingConfig.gpu_defaults()
        return routing.model_copy(update={"max_queued_per_replica": self.limits.max_queued_requests})


def is_plain_name(name: str) -> bool:
    """Pool and node names: letters, digits, - and _ (they become Ray resource and app names)."""
    return name.replace("-", "").replace("_", "").isalnum()


_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z0-9])")  # 8b, 70b, 1.5b


def _family(name: str) -> str:
    return re.match(r"[a-z]*", name.lower())[0]


def _sizes(name: str) -> set[float]:
    return {float(size) for size in _SIZE.findall(name.lower())}


def profile_conflict(model_name: str, profile: str, profiles: Iterable[str]) -> str | None:
    """What in a registered model's name says it is not `profile`, or None.

    Args:
        model_name: the registered model name (`support-llama-8b`).
        profile: the catalog profile it is served as (`llama-3.1-8b`).
        profiles: every catalog profile; their leading words are the known families.

    Returns:
        `names the qwen family` or `names a 70B model` when the name holds a catalog family
        other than the profile's and not the profile's, or sizes (`<N>b`) none of which is the
        profile's; None when it fits or names neither (`tandem-tiny`: nothing to check).
    """
    words = set(re.findall(r"[a-z]+", model_name.lower()))
    named = sorted(words & {_family(name) for name in profiles} - {""})
    if named and _family(profile) not in named:
        return f"names the {'/'.join(named)} family"
    sizes, profile_sizes = _sizes(model_name), _sizes(profile)
    if sizes and profile_sizes and not sizes & profile_sizes:
        return f"names a {'/'.join(f'{size:g}B' for size in sorted(sizes))} model"
    return None


@lru_cache(maxsize=1)
def _catalog():
    from tandem.catalog import load_catalog

    return load_catalog()


def catalog_price_per_hour(gpu: str, tensor_parallel_size: int = 1) -> float:
    """USD per replica-hour of `tensor_parallel_size` GPUs of type `gpu` at the catalog's
    price: the one source of GPU prices, so a Serve config need not repeat them."""
    spec = _catalog().gpus.get(gpu)
    if spec is None:
        raise ValueError(f"GPU {gpu!r} is not in the catalog (known: "
                         f"{', '.join(sorted(_catalog().gpus))}); set price_per_hour")
    return spec.price_per_hour * tensor_parallel_size


def tandem_args(serve_config: dict[str, Any]) -> dict[str, Any]:
    """The `args` of the Tandem ingress application inside a Serve config file."""
    apps = serve_config.get("applications") or []
    if not isinstance(apps, list) or not all(isinstance(app, dict) for app in apps):
        raise UserError("`applications` of the Serve config must be a list of mappings")
    for app in apps:
        if str(app.get("import_path", "")).endswith(":build_app"):
            args = app.get("args") or {}
            if not isinstance(args, dict):
                raise UserError("the `args` of the build_app application must be a mapping")
            return args
    raise UserError("no application with import_path ...:build_app in the Serve config")


def load_serve_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ServeAppConfig:
    """Read a Serve YAML (`apps/serve.*.yaml`) and validate its Tandem app args strictly."""
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: no such Serve config") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the Serve config ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: invalid YAML ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a Serve config is a mapping with `applications`, "
                        f"not a {type(data).__name__}")
    try:
        args = dict(tandem_args(data))
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    args.update(overrides or {})
    try:
        return ServeAppConfig.model_validate(args)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, str(path))) from None

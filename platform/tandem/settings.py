"""Where Tandem keeps its state and which loopback ports its services use.

One place for these facts: every other module asks `load_settings()`.
Values come from the environment (`TANDEM_*`), so a Ray job or Serve replica
started by the local stack sees the same settings as the CLI that started it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tandem.errors import UserError

ENV_PREFIX = "TANDEM_"
_LIST_FIELDS = ("local_pools", "model_dirs")


class Settings(BaseModel):
    """Local stack settings; each field can be set as `TANDEM_<FIELD>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(Path(".tandem"), description="State dir: logs, pids, MLflow store, models.")
    project_dir: Path = Field(
        Path("."), description="Project checkout the local Ray nodes import `apps.*` from, "
        "so Serve configs deploy with `serve deploy` too (on a cluster: bake it into the image).")
    host: str = Field("127.0.0.1", description="Address every local service binds to.")
    ray_port: int = Field(6379, description="Ray GCS port.")
    dashboard_port: int = Field(8265, description="Ray dashboard and Jobs API port.")
    mlflow_port: int = Field(5000, description="MLflow tracking server port.")
    mlflow_uri: str = Field(
        "", description="URL of an MLflow tracking server that is not the stack's own (on "
        "Kubernetes: the MLflow Service); default http://<host>:<mlflow_port>.")
    api_port: int = Field(8000, description="Ray Serve HTTP port (OpenAI-compatible API).")
    haproxy_stats_port: int = Field(
        8404, description="Stats page of the HAProxy that serves the API port.")
    haproxy_metrics_port: int = Field(
        9101, description="Prometheus exporter of the HAProxy that serves the API port.")
    prometheus_port: int = Field(
        9095, description="Prometheus of `tandem observe` (not 9090: Debian's prometheus "
        "package runs its own service there).")
    head_num_cpus: int = Field(
        8, description="Logical CPUs the Ray head advertises (above the physical count on "
        "purpose: Serve, Train and Data actors reserve CPUs they mostly do not use).")
    object_store_mb: int = Field(400, description="Ray object store of the head node, in MiB.")
    local_pools: list[str] = Field(
        ["fast", "cheap"], description="Local serving pools; each gets its own Ray worker node "
        "advertising resource `pool:<name>` (comma-separated in the environment).")
    pool_node_num_cpus: int = Field(8, description="Logical CPUs of each pool's Ray node.")
    pool_object_store_mb: int = Field(200, description="Object store of each pool node, in MiB.")
    model_cache: Path = Field(
        Path("~/.cache/tandem/models"), description="Converted packaged base models (`tandem "
        "models import`), one directory per source file's SHA-256; outside `home` so fresh "
        "homes (tests, demos) convert once per machine.")
    model_dirs: list[Path] = Field(
        [], description="Directories a fine-tune may load a local base model from, besides "
        "the stack's own models dir (comma-separated in the environment).")

    @property
    def ray_address(self) -> str:
        return f"{self.host}:{self.ray_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    @property
    def mlflow_url(self) -> str:
        return self.mlflow_uri or f"http://{self.host}:{self.mlflow_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def run_dir(self) -> Path:
        """Pid files and service logs of the local stack."""
        return self.home / "run"

    @property
    def models_dir(self) -> Path:
        """Base models built locally and registry downloads cached by version."""
        return self.home / "models"

    @property
    def allowed_model_dirs(self) -> list[Path]:
        """Where a local base model may live: the models dir and `model_dirs`."""
        return [self.models_dir, *self.model_dirs]

    @property
    def checkpoints_dir(self) -> Path:
        """Ray Train storage: every run's checkpoints stay here after the job ends."""
        return self.home / "checkpoints"

    def service_env(self) -> dict[str, str]:
        """Environment that carries these settings into Ray jobs and Serve replicas."""
        return {
            "TANDEM_HOME": str(self.home),
            "TANDEM_HOST": self.host,
            "TANDEM_RAY_PORT": str(self.ray_port),
            "TANDEM_DASHBOARD_PORT": str(self.dashboard_port),
            "TANDEM_MLFLOW_PORT": str(self.mlflow_port),
            "TANDEM_MLFLOW_URI": self.mlflow_uri,
            "TANDEM_API_PORT": str(self.api_port),
            "TANDEM_HAPROXY_STATS_PORT": str(self.haproxy_stats_port),
            "TANDEM_HAPROXY_METRICS_PORT": str(self.haproxy_metrics_port),
            "TANDEM_MODEL_DIRS": ",".join(map(str, self.model_dirs)),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
        }


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from `TANDEM_*` variables; paths are made absolute."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for name in Settings.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw.split(",") if name in _LIST_FIELDS else raw
    try:
        settings = Settings(**values)
    except ValueError as error:
        first = error.errors()[0]  # type: ignore[attr-defined]
        key = ENV_PREFIX + str(first["loc"][0]).upper()
        raise UserError(f"{key}: {first['msg']}") from None
    return settings.model_copy(update={
        "home": settings.home.expanduser().resolve(),
        "project_dir": settings.project_dir.expanduser().resolve(),
        "model_cache": settings.model_cache.expanduser().resolve(),
        "model_dirs": [path.expanduser().resolve() for path in settings.model_dirs]})


def short_temp_dir(settings: Settings, pattern: str) -> Path:
    """A directory under the system's temp dir named `pattern` with `{}` filled by a digest
    of the stack's home: short (Unix socket paths are limited to ~100 bytes) and unique per
    stack."""
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / pattern.format(digest)


def ray_token_file(settings: Settings) -> Path:
    return settings.home / "secrets" / "ray_token"


def ray_cluster_env(settings: Settings) -> dict[str, str]:
    """Environment of every Ray process and client of this cluster: Ray's token auth with
    the stack's own token, and, for a loopback host, loopback kept as it is. Ray otherwise
    resolves a loopback address to the machine's own, and its GCS, raylet and agent ports
    then listen on every interface (see `tandem.ray_node`)."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ray_token_file(settings)),
           "RAY_USAGE_STATS_ENABLED": "0"}
    if is_loopback(settings.host):
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address, IPv4 written as IPv6 (`::ffff:127.0.0.1`) included."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def pool_resource(pool: str) -> str:
    """The custom resource a local pool's Ray node advertises and its replicas request."""
    return f"pool:{pool}"

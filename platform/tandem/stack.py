"""The local stack: a Ray cluster and an MLflow tracking server on loopback.

Each service runs as its own process group (`ray start --block`, `mlflow
server`), recorded in `$TANDEM_HOME/run/<service>.json`. `down` signals exactly
those groups and the processes they spawned, so it never touches another Ray
cluster on the same machine (unlike `ray stop`). `up`, `down` and `status` are
idempotent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tandem.errors import UserError
from tandem.serve.haproxy import haproxy_dir, haproxy_env
from tandem.serve.request_ids import MIDDLEWARES
from tandem.settings import (
    Settings,
    pool_resource,
    ray_cluster_env,
    ray_token_file,
    short_temp_dir,
)

START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Service:
    """One long-running process of the local stack."""

    name: str
    command: list[str]
    url: str
    health_url: str
    ports: dict[str, tuple[int, str]] = field(default_factory=dict)  # label -> (port, env var)
    extra_env: dict[str, str] = field(default_factory=dict)
    # A Ray worker node is healthy once the cluster lists it alive with this resource.
    node_resource: str = ""


def _bin(name: str) -> str:
    """An executable of this virtualenv (the stack must run the same Python as the CLI)."""
    return str(Path(sys.executable).with_name(name))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ray_node_env(settings: Settings) -> dict[str, str]:
    """A Ray node's environment: the client one, plus the project on the import path so
    Serve import paths like `apps.llm_app:build_app` resolve in the node's workers."""
    path = [str(settings.project_dir), os.environ.get("PYTHONPATH", "")]
    return {**ray_cluster_env(settings), **haproxy_env(settings),
            "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": MIDDLEWARES,
            "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def ray_auth_headers(settings: Settings) -> dict[str, str]:
    """Headers for the Ray dashboard's HTTP API (what Ray's own clients send)."""
    path = ray_token_file(settings)
    return {"authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}


def ensure_ray_token(settings: Settings) -> None:
    """Write the stack's Ray token (0600) unless it exists."""
    import secrets

    from tandem.auth import write_secret

    path = ray_token_file(settings)
    if not path.exists():
        write_secret(path, secrets.token_hex(32))


def services(settings: Settings) -> list[Service]:
    """The processes `up` starts, in start order."""
    mlflow_dir = settings.home / "mlflow"
    ray_head = Service(
        name="ray-head",
        command=[
            *_ray_start(), "--head", "--block",
            "--node-ip-address", settings.host,
            "--port", str(settings.ray_port),
            "--dashboard-host", settings.host,
            "--dashboard-port", str(settings.dashboard_port),
            "--num-cpus", str(settings.head_num_cpus),
            "--object-store-memory", str(settings.object_store_mb * 1024 * 1024),
            "--ray-client-server-port", str(free_port(settings.host)),
            "--dashboard-agent-listen-port", str(free_port(settings.host)),
            "--disable-usage-stats",
        ],
        url=settings.dashboard_url,
        health_url=f"{settings.dashboard_url}/api/gcs_healthz",
        ports={
            "Ray GCS": (settings.ray_port, "TANDEM_RAY_PORT"),
            "Ray dashboard": (settings.dashboard_port, "TANDEM_DASHBOARD_PORT"),
            "HAProxy stats": (settings.haproxy_stats_port, "TANDEM_HAPROXY_STATS_PORT"),
            "HAProxy metrics": (settings.haproxy_metrics_port, "TANDEM_HAPROXY_METRICS_PORT"),
        },
        extra_env=ray_node_env(settings),
    )
    mlflow = Service(
        name="mlflow",
        command=[
            _bin("mlflow"), "server",
            "--host", settings.host,
            "--port", str(settings.mlflow_port),
            "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "--artifacts-destination", str(mlflow_dir / "artifacts"),
            "--workers", "1",
        ],
        url=settings.mlflow_url,
        health_url=f"{settings.mlflow_url}/health",
        ports={"MLflow": (settings.mlflow_port, "TANDEM_MLFLOW_PORT")},
        # Server-side job execution spawns ~8 Python workers (2 GB, seconds of CPU each);
        # Tandem runs its jobs on Ray, so the local server goes without it.
        extra_env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    pool_nodes = [
        Service(
            name=f"ray-pool-{pool}",
            command=[
                *_ray_start(), "--block",
                "--address", settings.ray_address,
                "--node-ip-address", settings.host,
                "--num-cpus", str(settings.pool_node_num_cpus),
                "--resources", json.dumps({pool_resource(pool): 4}),
                "--labels", f"tandem-pool={pool}",
                "--object-store-memory", str(settings.pool_object_store_mb * 1024 * 1024),
                "--dashboard-agent-listen-port", str(free_port(settings.host)),
                # Nodes on one machine otherwise share the head's session dir, and one
                # node's runtime-env agent re-extracting a job's working_dir pulls it
                # from under a driver running on another node.
                "--temp-dir", str(node_temp_dir(settings, pool)),
                "--disable-usage-stats",
            ],
            url=f"{settings.dashboard_url}/#/cluster",
            health_url=f"{settings.dashboard_url}/nodes?view=summary",
            extra_env=ray_node_env(settings),
            node_resource=pool_resource(pool),
        )
        for pool in settings.local_pools
    ]
    return [mlflow, ray_head, *pool_nodes]


def _ray_start() -> list[str]:
    """`ray start`, through the entry point that keeps a loopback node address."""
    return [sys.executable, "-m", "tandem.ray_node", "start"]


def node_temp_dir(settings: Settings, pool: str) -> Path:
    """A pool node's Ray temp dir (its logs under session_latest/logs)."""
    return short_temp_dir(settings, f"ray-tandem-{{}}-{pool}")


def prometheus_service(settings: Settings) -> Service:
    """The Prometheus `tandem observe` starts beside the stack (not part of `up`), on the
    config it renders under `$TANDEM_HOME/prometheus` (`tandem.observe`)."""
    home = settings.home / "prometheus"
    return Service(
        name="prometheus",
        command=["prometheus", f"--config.file={home / 'prometheus.yml'}",
                 f"--storage.tsdb.path={home / 'data'}", "--storage.tsdb.retention.time=7d",
                 f"--web.listen-address={settings.host}:{settings.prometheus_port}"],
        url=settings.prometheus_url,
        health_url=f"{settings.prometheus_url}/-/ready",
        ports={"Prometheus": (settings.prometheus_port, "TANDEM_PROMETHEUS_PORT")},
    )


def alive_raylets(settings: Settings) -> list[dict]:
    """The alive Ray nodes' raylet records, from the dashboard (ports, resources)."""
    try:
        reply = requests.get(f"{settings.dashboard_url}/nodes?view=summary", timeout=2.0,
                             headers=ray_auth_headers(settings))
        nodes = reply.json()["data"]["summary"]
    except (requests.RequestException, ValueError, KeyError):
        return []
    return [node["raylet"] for node in nodes if node.get("raylet", {}).get("state") == "ALIVE"]


def _alive_node_resources(settings: Settings) -> list[dict[str, float]]:
    return [raylet.get("resourcesTotal", {}) for raylet in alive_raylets(settings)]


def _service_healthy(settings: Settings, service: Service) -> bool:
    if service.node_resource:
        return any(service.node_resource in resources
                   for resources in _alive_node_resources(settings))
    return is_healthy(service.health_url)


def _record_path(settings: Settings, service: Service) -> Path:
    return settings.run_dir / f"{service.name}.json"


def _log_path(settings: Settings, service: Service) -> Path:
    return settings.run_dir / f"{service.name}.log"


def _read_record(settings: Settings, service: Service) -> dict | None:
    path = _record_path(settings, service)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _running_pid(settings: Settings, service: Service) -> int | None:
    """Pid of the service's leader process if it is still the one we started."""
    record = _read_record(settings, service)
    if record is None:
        return None
    try:
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["create_time"]) > 1.0:
            return None  # the pid was reused by another process
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return record["pid"]


def is_healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return requests.get(url, timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


def _wait_healthy(settings: Settings, service: Service, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(
                f"{service.name} exited with status {process.returncode} while starting; "
                f"see {_log_path(settings, service)}"
            )
        if _service_healthy(settings, service):
            return
        time.sleep(0.5)
    raise UserError(
        f"{service.name} did not become healthy at {service.health_url} within "
        f"{START_TIMEOUT_S:.0f} s; see {_log_path(settings, service)}"
    )


def _check_ports(settings: Settings, service: Service) -> None:
    for label, (port, env_var) in service.ports.items():
        if not port_is_free(settings.host, port):
            raise UserError(
                f"port {port} ({label}) is already in use on {settings.host}; stop what holds "
                f"it or choose another port with {env_var}=..."
            )


def _launch(settings: Settings, service: Service) -> subprocess.Popen:
    log = _log_path(settings, service).open("ab")
    env = {**os.environ, **settings.service_env(), **service.extra_env}
    # Ray jobs run `python ...`: make that this virtualenv's Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    process = subprocess.Popen(
        service.command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=settings.home,
        start_new_session=True,  # its own process group, so `down` can signal all of it
    )
    record = {
        "pid": process.pid,
        "create_time": psutil.Process(process.pid).create_time(),
        "command": service.command,
        "log": str(_log_path(settings, service)),
    }
    _record_path(settings, service).write_text(json.dumps(record, indent=2))
    return process


def _stop(settings: Settings, *to_stop: Service) -> list[Service]:
    """Stop the services' process groups and every process they spawned, all at once; returns
    those that were running. What outlives STOP_GRACE_S is killed, as `ray stop` does after
    its grace period: a local Ray head's own graceful stop takes over 30 s here."""
    running: list[tuple[Service, int]] = []
    for service in to_stop:
        pid = _running_pid(settings, service)
        if pid is None:
            _record_path(settings, service).unlink(missing_ok=True)
        else:
            running.append((service, pid))
    leaders = [pid for _, pid in running]
    family = _with_descendants(leaders)
    _signal_groups(leaders, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    _signal_groups(leaders, signal.SIGKILL)  # stragglers that left the tree but kept the group
    for service, _ in running:
        _record_path(settings, service).unlink(missing_ok=True)
    return [service for service, _ in running]


def processes(settings: Settings) -> list[psutil.Process]:
    """Every live process of the running stack: each service's leader and what it spawned."""
    leaders = [_running_pid(settings, service)
               for service in [*services(settings), prometheus_service(settings)]]
    return _with_descendants([pid for pid in leaders if pid is not None])


def haproxy_pid(settings: Settings) -> int | None:
    """The HAProxy serving the API port: Ray Serve starts it on the head with the first
    deploy (`tandem.serve.haproxy`)."""
    for process in processes(settings):
        try:
            if process.name() == "haproxy":
                return process.pid
        except psutil.NoSuchProcess:
            continue
    return None


def _with_descendants(leaders: Iterable[int]) -> list[psutil.Process]:
    family: list[psutil.Process] = []
    for pid in leaders:
        try:
            family += [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return family


def _signal_groups(leaders: Iterable[int], signum: int) -> None:
    for pid in leaders:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def up(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Start every service not already running (all at once); wait until each is healthy."""
    from tandem.auth import ensure_keys_file

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
    haproxy_dir(settings).mkdir(exist_ok=True)
    haproxy_dir(settings).chmod(0o700)
    ensure_ray_token(settings)
    created = ensure_keys_file(settings.home)
    if created:
        log(f"API keys: generated {created} (mode 0600; TANDEM_API_KEY / TANDEM_ADMIN_KEY "
            "override them)")
    to_start = []
    for service in services(settings):
        if _running_pid(settings, service) is not None:
            log(f"{service.name}: already running")
        else:
            _check_ports(settings, service)
            to_start.append(service)
    started = time.monotonic()
    launched: list[Service] = []

    def ready(service: Service, process: subprocess.Popen) -> None:
        _wait_healthy(settings, service, process)
        log(f"{service.name}: healthy after {time.monotonic() - started:.0f} s")

    try:
        processes = []
        for service in (s for s in to_start if not s.node_resource):
            log(f"{service.name}: starting (log: {_log_path(settings, service)})")
            processes.append((service, _launch(settings, service)))
            launched.append(service)
        for service, process in processes:
            ready(service, process)
        # Worker nodes join the head one at a time: Ray gives a joining raylet a fixed
        # 30 s to register, which two nodes starting at once on 2 busy cores can miss.
        for service in (s for s in to_start if s.node_resource):
            log(f"{service.name}: starting (log: {_log_path(settings, service)})")
            launched.append(service)
            try:
                ready(service, _launch(settings, service))
            except UserError:
                log(f"{service.name}: retrying once")
                _stop(settings, service)
                ready(service, _launch(settings, service))
    except BaseException:
        _stop(settings, *launched)
        raise


def start(settings: Settings, service: Service, log: Callable[[str], None] = print) -> None:
    """Start one more service beside the stack (`tandem observe`), unless it runs."""
    if _running_pid(settings, service) is not None:
        log(f"{service.name}: already running")
        return
    _check_ports(settings, service)
    log(f"{service.name}: starting (log: {_log_path(settings, service)})")
    process = _launch(settings, service)
    try:
        _wait_healthy(settings, service, process)
    except BaseException:
        _stop(settings, service)
        raise
    log(f"{service.name}: healthy at {service.url}")


def stop(settings: Settings, service: Service) -> bool:
    """Stop one service `start` started; True if it was running."""
    return bool(_stop(settings, service))


def down(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Stop what `up` and `observe` started, every service at once (`_stop`)."""
    stopped = _stop(settings, prometheus_service(settings), *reversed(services(settings)))
    for service in stopped:
        log(f"{service.name}: stopped")
    if not stopped:
        log("nothing to stop")


def status(settings: Settings) -> list[dict[str, object]]:
    """One row per service: name, pid, health, URL (Prometheus only while it runs)."""
    rows = []
    observer = prometheus_service(settings)
    running_observer = [observer] if _running_pid(settings, observer) is not None else []
    for service in [*services(settings), *running_observer]:
        pid = _running_pid(settings, service)
        rows.append({
            "service": service.name,
            "pid": pid,
            "healthy": pid is not None and _service_healthy(settings, service),
            "url": service.url,
            "log": str(_log_path(settings, service)),
        })
    return rows


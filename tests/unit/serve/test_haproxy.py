"""HAProxy mode on the stack's host: its environment and the launcher that moves the
two frontends Ray's template binds on every interface onto TANDEM_HOST."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tandem.serve.haproxy import (
    LAUNCHER,
    ON_HOST_CONFIG,
    bind_on_host,
    haproxy_env,
    rewrite_config_argument,
)
from tandem.settings import load_settings

ALL_INTERFACES = re.compile(r"^\s*bind\s+(\*|0\.0\.0\.0|::)?:\d+", re.M)


def _ray_template_binds() -> str:
    """The `bind` lines of Ray's own HAProxy template, with ports and hosts filled in."""
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    lines = [line for line in HAPROXY_CONFIG_TEMPLATE.splitlines()
             if line.strip().startswith("bind ")]
    filled = "\n".join(lines)
    for placeholder, value in {"config.stats_port": "8404", "config.metrics_port": "9101",
                               "config.frontend_host": "127.0.0.1",
                               "config.frontend_port": "8000",
                               "config.grpc_frontend_host": "127.0.0.1",
                               "config.grpc_frontend_port": "9000"}.items():
        filled = re.sub(r"\{\{\s*" + re.escape(placeholder) + r"\s*\}\}", value, filled)
    return filled


def test_rays_template_binds_stats_and_metrics_on_every_interface_and_the_rewrite_moves_them():
    binds = _ray_template_binds()
    assert len(ALL_INTERFACES.findall(binds)) == 2, binds  # what the launcher exists for
    moved = bind_on_host(binds, "127.0.0.1")
    assert ALL_INTERFACES.findall(moved) == []
    assert "bind 127.0.0.1:8404" in moved and "bind 127.0.0.1:9101" in moved
    assert "bind 127.0.0.1:8000" in moved and "bind 127.0.0.1:9000 proto h2" in moved


def test_the_rewrite_leaves_bound_addresses_and_other_lines_alone():
    config = "frontend a\n    bind 10.0.0.5:8000\n    bind :::9101\n  # bind *:1 comment\n"
    assert bind_on_host(config, "::1") == (
        "frontend a\n    bind 10.0.0.5:8000\n    bind ::1:9101\n  # bind *:1 comment\n")


def test_the_launcher_hands_haproxy_a_copy_and_keeps_the_other_arguments(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text("listen stats\n  bind *:8404\n")
    args = rewrite_config_argument(["-db", "-f", str(config), "-sf", "42"], "127.0.0.1")
    copy = Path(args[2])
    assert args[:2] == ["-db", "-f"] and args[3:] == ["-sf", "42"] and copy != config
    assert copy.read_text() == "listen stats\n  bind 127.0.0.1:8404\n"
    assert config.read_text() == "listen stats\n  bind *:8404\n"  # Ray's own file untouched


def test_the_launcher_runs_the_bundled_haproxy_on_the_rewritten_config(tmp_path):
    """`haproxy -c` checks a config and exits: the real binary, through the real launcher."""
    config = tmp_path / "haproxy.cfg"
    config.write_text("defaults\n  mode http\n  timeout client 1s\n  timeout server 1s\n"
                      "  timeout connect 1s\nlisten stats\n  bind *:18404\n  stats enable\n")
    launcher = Path(sys.executable).with_name(LAUNCHER)
    # Ray's nodes name the launcher in this variable, which the bundled binary's lookup reads.
    env = {**os.environ, "TANDEM_HOST": "127.0.0.1", "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher)}
    checked = subprocess.run([str(launcher), "-c", "-f", str(config)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "bind 127.0.0.1:18404" in (tmp_path / ON_HOST_CONFIG).read_text()


def test_the_launcher_names_a_missing_config_argument():
    launcher = Path(sys.executable).with_name(LAUNCHER)
    failed = subprocess.run([str(launcher), "-db"], capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "expected `-f <config file>`" in failed.stderr


def test_each_stack_keeps_haproxy_state_and_ports_of_its_own():
    one = haproxy_env(load_settings({"TANDEM_HOME": "/srv/a", "TANDEM_HAPROXY_STATS_PORT": "18404"}))
    two = haproxy_env(load_settings({"TANDEM_HOME": "/srv/b"}))
    assert one["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert one["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert two["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    for key in ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH",
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE"):
        assert Path(one[key]).parent != Path(two[key]).parent, key
    # Ray nests a 56-character directory in it; HAProxy takes socket paths of <= 97 bytes.
    assert len(one["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 57 <= 97
    assert Path(one["RAY_SERVE_HAPROXY_BINARY_PATH"]).name == LAUNCHER

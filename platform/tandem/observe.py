"""Prometheus beside the local stack (`tandem observe`, `make observe`).

The shipped scrape config and rules (`deploy/prometheus/`) are written for a Ray
cluster's head node, where Ray lists every node's metrics endpoint in
`/tmp/ray/prom_metrics_service_discovery.json`. Locally that file is shared by every Ray
cluster on the machine, so `observe` renders a copy of the config under
`$TANDEM_HOME/prometheus/` whose targets file lists this stack's nodes only (from the
dashboard), scraping and evaluating every 5 s, with the same rule files. Running it again
rewrites the targets (after nodes were added); Prometheus rereads them on its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from tandem import stack
from tandem.errors import UserError
from tandem.settings import Settings

LOCAL_INTERVAL = "5s"
INSTALL_HINT = ("install Debian's prometheus package (`apt-get install prometheus`; "
                "`make install` does it), or put a prometheus binary on PATH")


def prometheus_dir(settings: Settings) -> Path:
    """The shipped scrape config, rules and rule tests (`deploy/prometheus` of the project)."""
    return settings.project_dir / "deploy" / "prometheus"


def scrape_targets(settings: Settings) -> list[str]:
    """host:port of every alive node's metrics endpoint."""
    return sorted(f"{raylet['nodeManagerAddress']}:{raylet['metricsExportPort']}"
                  for raylet in stack.alive_raylets(settings) if raylet.get("metricsExportPort"))


def render_config(settings: Settings, targets: list[str]) -> Path:
    """Write the local Prometheus config and its targets file; return the config's path."""
    shipped = prometheus_dir(settings)
    config = yaml.safe_load((shipped / "prometheus.yml").read_text(encoding="utf-8"))
    home = settings.home / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    targets_file = home / "targets.json"
    targets_file.write_text(json.dumps([{"labels": {"job": "ray"}, "targets": targets}]))
    config["global"].update(scrape_interval=LOCAL_INTERVAL, evaluation_interval=LOCAL_INTERVAL)
    config["rule_files"] = [str(shipped / rule) for rule in config["rule_files"]]
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", ()):
            discovery["files"] = [str(targets_file)]
    path = home / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def observe(settings: Settings, log: Callable[[str], None] = print) -> str:
    """Start (or retarget) Prometheus on the running stack; returns its URL."""
    if shutil.which("prometheus") is None:
        raise UserError(f"prometheus is not installed: {INSTALL_HINT}")
    targets = scrape_targets(settings)
    if not targets:
        raise UserError(f"no Ray node answers at {settings.dashboard_url}; start the stack "
                        "first (`tandem up`)")
    render_config(settings, targets)
    log(f"scraping {len(targets)} Ray nodes: {', '.join(targets)}")
    stack.start(settings, stack.prometheus_service(settings), log)
    return settings.prometheus_url

"""`tandem status`: each service, its URL and health, and how to reach the cluster."""

from __future__ import annotations

import argparse

from tandem import stack
from tandem.auth import keys_file
from tandem.settings import Settings, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def print_status(settings: Settings) -> bool:
    """Print the service table; True when every service is up and healthy."""
    rows = stack.status(settings)
    print(f"TANDEM_HOME={settings.home}")
    print(f"{'service':<15} {'state':<9} {'pid':>7}  url")
    for row in rows:
        state = "healthy" if row["healthy"] else ("unhealthy" if row["pid"] else "stopped")
        print(f"{row['service']:<15} {state:<9} {row['pid'] or '-':>7}  {row['url']}")
    all_healthy = all(row["healthy"] for row in rows)
    if any(row["service"] == "ray-head" and row["healthy"] for row in rows):  # HAProxy's parent
        print(_haproxy_line(settings))
    if all_healthy:
        env = " ".join(f"{k}={v}" for k, v in stack.ray_cluster_env(settings).items())
        print("\nClient environment (Ray token auth with this stack's token):")
        print(f"  export {env} MLFLOW_TRACKING_URI={settings.mlflow_url}")
        print(f"API keys (Authorization: Bearer KEY): {keys_file(settings.home)}, "
              "unless TANDEM_API_KEY / TANDEM_ADMIN_KEY are set")
        print("Submit a fine-tune:")
        print(f"  ray job submit --address {settings.dashboard_url} --working-dir . -- "
              "python jobs/finetune.py --config jobs/configs/tiny.yaml")
    return all_healthy


def _haproxy_line(settings: Settings) -> str:
    pid = stack.haproxy_pid(settings)
    state = f"{'running':<9} {pid:>7}" if pid else f"{'idle':<9} {'-':>7}"
    ports = (f"stats http://{settings.host}:{settings.haproxy_stats_port}/stats, "
             f"metrics http://{settings.host}:{settings.haproxy_metrics_port}/metrics")
    where = (f"{settings.api_url} ({ports})" if pid
             else f"starts with the first deploy on {settings.api_url} ({ports})")
    return f"{'haproxy':<15} {state}  {where}"


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    print_status(settings)
    return 0

"""Joining the stack's Ray cluster from a Python process (the CLI, the retraining loop).

Ray's token auth must be configured before `ray` is first imported, so the environment
is set here and a process that imported Ray too early gets a message that says how to
fix it, not an authentication failure.
"""

from __future__ import annotations

import os
import sys

from tandem.errors import UserError
from tandem.settings import Settings, ray_cluster_env


def join_cluster(settings: Settings) -> None:
    """Attach this process to the stack's Ray cluster (namespace `tandem`), once."""
    env = ray_cluster_env(settings)
    if "ray" in sys.modules and os.environ.get("RAY_AUTH_MODE") != env["RAY_AUTH_MODE"]:
        raise UserError("Ray was imported before its token auth was set up; export "
                        + " ".join(f"{k}={v}" for k, v in env.items()) + " (`tandem status` "
                        "prints it) before starting Python")
    os.environ.update(env)
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address=settings.ray_address, namespace="tandem", log_to_driver=False,
                     logging_level="WARNING")
        except (ConnectionError, RuntimeError) as error:
            raise UserError(f"cannot reach Ray at {settings.ray_address} ({error}); "
                            "is the stack up? `tandem up`") from None

"""`ray start` for a node of a stack that stays on loopback: `python -m tandem.ray_node start ...`.

Ray 2.60 turns `--node-ip-address 127.0.0.1` into the machine's own address, and its
GCS, raylet and agent ports then listen on every interface. With
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which the stack sets for a loopback host (see
`settings.ray_cluster_env`), every Ray process and client keeps a loopback address as it
is, and each port Ray opens binds that address; but `ray start` then also refuses to
add a worker node to a cluster. This entry point lets it add one and keeps the address
the node is given. Any other address passes through unchanged, as with plain `ray start`.
"""

from __future__ import annotations

import sys

from ray._private import ray_constants, services
from ray.scripts.scripts import main as ray_cli


def _keep_address(host: str) -> str:
    if not host:
        raise ValueError(f"Malformed host: {host}")
    return host


def main() -> int:
    ray_constants.ENABLE_RAY_CLUSTER = True  # `ray start --address` may add this node
    services.resolve_ip_for_localhost = _keep_address  # ... at the address it is given
    return ray_cli()


if __name__ == "__main__":
    sys.exit(main())

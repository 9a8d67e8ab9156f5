"""Pure routing policy: request features + pool states -> the pool that serves it.

The live ingress and the planner's simulator plug the same policy object in, so a
policy tested offline behaves the same under real traffic.
"""

from tandem.routing.policy import RoutingPolicy
from tandem.routing.types import Decision, PoolState, RequestFeatures

__all__ = ["Decision", "PoolState", "RequestFeatures", "RoutingPolicy"]

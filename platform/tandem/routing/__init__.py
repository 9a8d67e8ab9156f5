"""Pure routing policy: request features + pool states -> the pool that serves it.

The live ingress and the planner's simulator plug the same policy object in, so a
policy tested offline behaves the same under real traffic.
"""

from tandem.routing.config import RoutingConfig, TierTargets
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.hints import InvalidRoutingHint, RoutingHints, parse_routing_hints
from tandem.routing.latency import LatencyModel, Prediction
from tandem.routing.log import DecisionLog, format_explain
from tandem.routing.policy import NoHealthyPool, RoutingPolicy
from tandem.routing.types import Candidate, Decision, PoolState, RequestFeatures

__all__ = ["Candidate", "Decision", "DecisionLog", "InvalidRoutingHint", "LatencyCostPolicy",
           "LatencyModel", "NoHealthyPool", "PoolState", "Prediction", "RequestFeatures",
           "RoutingConfig", "RoutingHints", "RoutingPolicy", "TierTargets", "format_explain",
           "parse_routing_hints"]

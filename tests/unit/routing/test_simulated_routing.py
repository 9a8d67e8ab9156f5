import numpy as np
from tandem.planner.simulator import Slo, simulate
from tandem.planner.trace import Trace
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.types import RequestFeatures


class Recording(LatencyCostPolicy):
    def __init__(self, priors):
        super().__init__(priors)
        self.picks, self.seen = [], []

    def pick_pool(self, request, pools, now):
        self.picks.append(now)
        return super().pick_pool(request, pools, now)

    def observe(self, pool, request, now, *, ttft_ms=None, tpot_ms=None):
        self.seen.append((now, len(self.picks), ttft_ms, tpot_ms))
        super().observe(pool, request, now, ttft_ms=ttft_ms, tpot_ms=tpot_ms)


def test_simulator_drives_the_policy_and_feeds_it_causal_observations(priors):
    count = 300
    trace = Trace(np.arange(count) * 0.05, np.full(count, 600, np.int64),
                  np.full(count, 80, np.int64))
    tiers = ["interactive" if i % 3 == 0 else "batch" for i in range(count)]
    requests = [RequestFeatures(600, 80, tier=tier) for tier in tiers]
    pools = {"H100": (priors["H100"], 1), "L4": (priors["L4"], 2)}
    policy = Recording({name: model for name, (model, _) in pools.items()})
    result = simulate(trace, pools, Slo(300, 25), policy=policy, requests=requests)
    assert result.served == count
    assert len(policy.picks) == count
    # delivered before the next pick and never ahead of it: the policy cannot see the future
    assert policy.seen and all(when <= policy.picks[after] for when, after, _, _ in policy.seen)
    assert any(t is not None for _, _, t, _ in policy.seen)
    assert any(p is not None for _, _, _, p in policy.seen)
    served_by = result.pool_of_request
    interactive = np.array([t == "interactive" for t in tiers])
    # interactive needs H100's decode speed (a 25 ms TPOT; L4 decodes at ~70 ms)
    assert (served_by[interactive] == 0).mean() > 0.9

"""Decision time across models: a teacher and its student, each on 4 GPU pools, against the
single-model decision over the teacher's 4 pools, in the same run on the same requests.

Target (issue #20): the 2 models x 4 pools decision takes at most 1.5x the single-model one.
The floor admits both models (the worst case: 8 pools to predict). Each decision is timed
alone with `perf_counter_ns`; the two kinds alternate per request so noise hits both.
Five rounds; the round with the lowest single-model median sets the ratio, all are printed.
Run: `pytest tests/bench/test_routing_models_decision_time.py -s`.
"""

from __future__ import annotations

import gc
import random
import time

from tandem.catalog import load_catalog
from tandem.perf import build_replica_model
from tandem.routing.config import RoutingConfig
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.models import ServedModel, pick_model_pool
from tandem.routing.types import PoolState, RequestFeatures

GPUS = ("H100", "H200", "A100-80G", "L4")
TIERS = ("interactive", "standard", "batch")
ROUNDS, DECISIONS = 5, 4000
TARGET = 1.5


def _median_us(samples: list[int]) -> float:
    return sorted(samples)[len(samples) // 2] / 1e3


def test_a_decision_over_two_models_costs_at_most_1_5x_a_single_model_decision():
    catalog = load_catalog()
    priors = {f"{role}-{gpu}": build_replica_model(catalog, gpu, catalog.model(profile), "fp8")
              for role, profile in (("teacher", "llama-3.1-70b"), ("student", "llama-3.1-8b"))
              for gpu in GPUS}
    models = [ServedModel("teacher", 1, tuple(f"teacher-{gpu}" for gpu in GPUS),
                          dict.fromkeys(TIERS, 0.95), reference=True),
              ServedModel("student", 1, tuple(f"student-{gpu}" for gpu in GPUS),
                          dict.fromkeys(TIERS, 0.9))]
    config = RoutingConfig.gpu_defaults()
    single, routed = LatencyCostPolicy(priors, config), LatencyCostPolicy(priors, config)
    rng = random.Random(5)
    cases = []
    for _ in range(DECISIONS):
        pools = [PoolState(name=name, gpu=prior.gpu, healthy=True, replicas=rng.randint(1, 4),
                           in_flight=rng.randint(0, 200), queued=rng.randint(0, 40),
                           price_per_hour=prior.price_per_hour)
                 for name, prior in priors.items()]
        request = RequestFeatures(rng.randint(16, 4000), rng.randint(1, 1024),
                                  tier=rng.choice(TIERS), min_quality=0.8)
        cases.append((request, pools, [pool for pool in pools if pool.name.startswith("t")]))
    rounds = []
    gc.collect()
    gc.freeze()
    for _ in range(ROUNDS):
        one, two = [], []
        for index, (request, pools, teacher_pools) in enumerate(cases):
            now = 1.0 + index * 1e-3
            t0 = time.perf_counter_ns()
            single.pick_pool(request, teacher_pools, now)
            t1 = time.perf_counter_ns()
            pick_model_pool(routed, request, request.min_quality, models, pools, now)
            t2 = time.perf_counter_ns()
            one.append(t1 - t0)
            two.append(t2 - t1)
        rounds.append((_median_us(one), _median_us(two)))
    gc.unfreeze()
    print(f"\n{DECISIONS} decisions x {ROUNDS} rounds; median per decision")
    for index, (one, two) in enumerate(rounds):
        print(f"  round {index}: 1 model x 4 pools {one:6.1f} us | 2 models x 4 pools "
              f"{two:6.1f} us | {two / one:.2f}x")
    one, two = min(rounds)
    ratio = two / one
    print(f"2 models x 4 pools / 1 model x 4 pools: {ratio:.2f}x (target <= {TARGET}x)")
    assert ratio <= TARGET

"""The plan's figure: the fleets the search simulated, and cost per request by size.

The left panel shows every fleet the planner replayed, its rent against its worst tier's
attainment, so a reader sees how close the cheaper fleets came; the right panel shows why
a mix can help: which GPU type is cheapest for which request size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.perf import rent_usd
from tandem.planner.capacity import replica_capacity
from tandem.planner.plan import Plan

PROMPT_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def write_plot(plan: Plan, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    simulated = plan.search.simulated
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    kinds = {"one GPU type": [v for v in simulated
                              if len(v.fleet) == 1 and not v.judgement.overload],
             "mixed": [v for v in simulated if len(v.fleet) > 1 and not v.judgement.overload],
             "queue grows (fails)": [v for v in simulated if v.judgement.overload]}
    for label, fleets in kinds.items():
        left.scatter([v.cost_per_hour for v in fleets], [v.judgement.worst for v in fleets],
                     label=label, s=18)
    left.scatter([plan.best.cost_per_hour], [plan.best.judgement.worst], marker="*", s=200,
                 color="black", label="plan")
    left.axhline(plan.demand.attainment, color="grey", linestyle=":", label="target")
    left.set(xscale="log", xlabel="fleet cost ($/hour)", ylabel="worst tier's attainment",
             title=f"{len(simulated)} fleets simulated", ylim=(max(0.0, plan.demand.attainment
                                                                   - 0.2), 1.005))
    left.legend(fontsize=8)
    strict = plan.demand.strictest
    output = float(np.median(plan.demand.trace.output_tokens))
    for name, offer in plan.offers.items():
        costs = []
        for prompt in PROMPT_SIZES:
            capacity = replica_capacity(offer.replica, prompt, output, strict)
            ok = capacity.meets_slo and capacity.rate > 0
            # $ per 1k requests: the rent of the replica time 1k requests take at capacity
            costs.append(rent_usd(offer.replica.price_per_hour, 1e3 / capacity.rate)
                         if ok else np.nan)
        right.plot(PROMPT_SIZES, costs, marker="o", label=name)
    right.set(xscale="log", yscale="log", xlabel=f"prompt tokens (output {output:.0f})",
              ylabel="$ per 1k requests at full load",
              title="Cost per request by size (strictest targets)")
    right.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

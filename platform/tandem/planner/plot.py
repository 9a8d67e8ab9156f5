"""The plan's figure: fleet cost against the TTFT target, and cost per request by size.

The left panel shows how much a latency target costs for each fleet (ILP estimates
at the validated headroom, so the curve is cheap to draw); the right panel shows why
a mix helps: which GPU type is cheapest for which request size.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tandem.perf import rent_usd
from tandem.planner.optimizer import bucket_trace, replica_capacity, solve_mix
from tandem.planner.plan import Plan

TTFT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
PROMPT_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


def write_plot(plan: Plan, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = bucket_trace(plan.trace)
    headroom = plan.best.headroom or 0.8
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ttfts = [plan.slo.ttft_ms * factor for factor in TTFT_FACTORS]
    fleets = {"mix (ILP)": None, **{f"only {name}": name for name in plan.replicas}}
    for label, only in fleets.items():
        costs = []
        for ttft in ttfts:
            mix = solve_mix(buckets, plan.replicas, replace(plan.slo, ttft_ms=ttft), headroom,
                            only=only)
            costs.append(np.nan if mix is None else mix.cost_per_hour)
        left.plot(ttfts, costs, marker="o", label=label)
    left.axvline(plan.slo.ttft_ms, color="grey", linestyle=":", label="requested TTFT")
    left.set(xscale="log", xlabel="TTFT target (ms)", ylabel="fleet cost ($/hour, ILP estimate)",
             title=f"Cost vs TTFT target (TPOT <= {plan.slo.tpot_ms:g} ms)")
    left.legend(fontsize=8)
    output = float(np.median(plan.trace.output_tokens))
    for name, replica in plan.replicas.items():
        costs = []
        for prompt in PROMPT_SIZES:
            capacity = replica_capacity(replica, prompt, output, plan.slo)
            ok = capacity.meets_slo and capacity.rate > 0
            # $ per 1k requests: the rent of the replica time 1k requests take at capacity
            costs.append(rent_usd(replica.price_per_hour, 1e3 / capacity.rate) if ok else np.nan)
        right.plot(PROMPT_SIZES, costs, marker="o", label=name)
    right.set(xscale="log", yscale="log", xlabel=f"prompt tokens (output {output:.0f})",
              ylabel="$ per 1k requests at full load",
              title="Cost per request by size (within SLO)")
    right.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

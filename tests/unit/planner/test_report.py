"""What a plan's report says about waiting: per-tier TTFT, the wait bound, and the cheaper
fleets that met the targets only with a growing queue."""

from planner_helpers import queue_replica, queue_trace
from tandem.planner.demand import MAX_WAIT_S, build_demand, make_tier
from tandem.planner.fleet import Offer
from tandem.planner.plan import Plan, search_fleets
from tandem.planner.report import plan_summary, render_markdown, render_table


def test_the_report_names_fleets_whose_queue_grows_and_the_plans_ttft_per_tier(catalog):
    demand = build_demand(queue_trace(), [make_tier("all", 1.0, None, 1000)], 0.99)
    offers = {"slow": Offer(queue_replica())}
    plan = Plan(model=catalog.model("llama-3.1-8b"), precision="fp16", rate_scale=1.0,
                policy="tandem", demand=demand, offers=offers,
                search=search_fleets(demand, offers), notes=[])
    summary = plan_summary(plan)
    assert summary["mix"] == {"slow": 3}  # so the search saw 2 x slow fail
    overloaded = ("2 x slow ($2.00/h) met the targets but fails: queue grows: mean wait 8.2 s "
                  "in the last tenth vs 0.1 s in the first")
    assert overloaded in summary["notes"]
    tier = summary["tiers"]["all"]
    assert tier["max_wait_s"] == MAX_WAIT_S
    assert tier["ttft_percentiles_ms"] == summary["ttft_ms"]  # one tier: the plan's own
    spread = "/".join(f"{tier['ttft_percentiles_ms'][k]:.0f}" for k in ("p50", "p90", "p99"))
    for text in (render_table(summary), render_markdown(summary)):
        row = next(line for line in text.splitlines() if line.lstrip("| ").startswith("all "))
        assert "TPOT <= 1000 ms and TTFT <= 30 s (wait bound)" in row and spread in row
        assert "Tiers without a TTFT target (all) are held to TTFT <= 30 s" in text
        assert overloaded in text

"""The plan's figure reads: plain dollar ticks that do not run into each other, and the plan
and each GPU type's fleet alone named next to their markers."""

import re

import pytest
from matplotlib.text import Text
from planner_helpers import fixed_step_replica, queue_replica, queue_trace
from tandem.planner.demand import build_demand, make_tier
from tandem.planner.fleet import Offer, describe
from tandem.planner.plan import Plan, search_fleets
from tandem.planner.plot import DollarFormatter, dollars, draw_plan, write_plot

DOLLARS = re.compile(r"\$\d{1,3}(,\d{3})*(\.\d+)?")


def toy_plan(catalog, owned_slow: int = 0) -> Plan:
    """Two GPU types on a trace whose queue grows on too few replicas, balanced by the
    least-loaded router: 3 x slow ($3) and 2 x fast ($3.2) pass alone, the plan is one of
    each ($2.6), and every fleet simulated has 100 % attainment (its labels share a row)."""
    demand = build_demand(queue_trace(), [make_tier("all", 1.0, None, 1000)], 0.99)
    offers = {"slow": Offer(queue_replica(), owned_gpus=owned_slow),
              "fast": Offer(fixed_step_replica(0.04, gpu="fast", price=1.6, max_num_seqs=1))}
    return Plan(model=catalog.model("llama-3.1-8b"), precision="fp16", rate_scale=1.0,
                policy="least-loaded", demand=demand, offers=offers,
                search=search_fleets(demand, offers, "least-loaded"), notes=[])


def shown(labels) -> list[Text]:
    return [label for label in labels if label.get_visible() and label.get_text()]


@pytest.mark.parametrize("owned_slow", [0, 3])  # with 3 owned, fleets of them cost $0
def test_cost_axes_have_plain_dollar_ticks_that_do_not_touch(catalog, owned_slow):
    figure = draw_plan(toy_plan(catalog, owned_slow))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    left, right = figure.axes
    for axis in (left.xaxis, right.yaxis):
        major = shown(axis.get_majorticklabels())
        assert len(major) >= 2
        assert all(DOLLARS.fullmatch(label.get_text()) for label in major), \
            [label.get_text() for label in major]
        assert not shown(axis.get_minorticklabels())
        boxes = [label.get_window_extent(renderer) for label in major]
        assert not any(one.overlaps(other) for i, one in enumerate(boxes)
                       for other in boxes[i + 1:])


def test_the_plan_and_each_fleet_of_one_gpu_type_are_named_at_their_markers(catalog):
    plan = toy_plan(catalog)
    alone = [v for v in plan.homogeneous.values() if v is not None and v.fleet != plan.best.fleet]
    assert len(plan.best.fleet) == 2 and len(alone) == 2  # a mixed plan and both types alone
    figure = draw_plan(plan)
    figure.canvas.draw()
    notes = {note.get_text(): note.xy for note in figure.axes[0].texts}
    assert notes[f"plan: {describe(plan.best.fleet)}"] == (plan.best.cost_per_hour,
                                                           plan.best.judgement.worst)
    for fleet in alone:
        assert notes[describe(fleet.fleet)] == (fleet.cost_per_hour, fleet.judgement.worst)
    assert len(notes) == 1 + len(alone)
    renderer = figure.canvas.get_renderer()
    boxes = [Text.get_window_extent(note, renderer) for note in figure.axes[0].texts]
    frame = figure.axes[0].get_window_extent(renderer)
    assert all(frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
               for box in boxes)
    assert not any(one.overlaps(other) for i, one in enumerate(boxes) for other in boxes[i + 1:])


def test_dollar_tick_labels():
    assert [dollars(v) for v in (12, 12.5, 0.05, 1200, 12.200000000000001, -1e-17, -1.0)] == \
        ["$12", "$12.5", "$0.05", "$1,200", "$12.2", "$0", ""]
    linear = DollarFormatter(log=False)
    linear.set_locs([0.28, 0.30, 0.32])
    assert [linear(v) for v in (0.28, 0.30, 0.32)] == ["$0.28", "$0.30", "$0.32"]
    linear.set_locs([0.0, 2.5, 5.0])
    assert [linear(v) for v in (0.0, 2.5, 5.0)] == ["$0.0", "$2.5", "$5.0"]


def test_write_plot_writes_a_png(catalog, tmp_path):
    path = write_plot(toy_plan(catalog), tmp_path / "plots" / "plan.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

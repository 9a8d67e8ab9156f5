"""The plan's figure: the fleets the search simulated, and cost per request by size.

The left panel shows every fleet the planner replayed, its rent against its worst tier's
attainment, so a reader sees how close the cheaper fleets came; the plan and each GPU
type's fleet alone are labelled with what they are. The right panel shows why a mix can
help: which GPU type is cheapest for which request size.

Money is read off plain dollar ticks ("$12", "$0.05"): a log scale only when the values
span more than `WIDE` times (matplotlib's own log labels, "1.8x10^1", run into each other
over a narrow range), and a label goes where it covers the fewest other labels and markers.
The figure is built on its own canvas, not pyplot's, so drawing it leaves no global state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import Formatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from tandem.perf import rent_usd
from tandem.planner.capacity import replica_capacity
from tandem.planner.fleet import describe
from tandem.planner.plan import Plan
from tandem.planner.search import Validation

PROMPT_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
DPI = 110
WIDE = 10.0  # dollar values spanning more than this ratio are drawn on a log scale
DOT, STAR = 18, 200  # marker areas, points^2
HEADROOM = 0.07  # room above 100 % attainment for labels, a share of the y range
GAP = 4.0  # points between a marker's edge and its label
# Where a fleet's label may lie from its marker, nearest first: right, left, above, below,
# the diagonals; at these multiples of the marker's radius plus GAP, the further ones with
# a leader line to the marker.
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (0.7, 0.7), (0.7, -0.7), (-0.7, 0.7),
              (-0.7, -0.7))
DISTANCES = (1.0, 2.5, 4.0, 6.0)


def write_plot(plan: Plan, path: Path) -> Path:
    """Draw the plan's figure (`draw_plan`) as a PNG at `path`."""
    figure = draw_plan(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def draw_plan(plan: Plan) -> Figure:
    """The fleets simulated (left) and cost per request by prompt size per GPU type (right)."""
    figure = Figure(figsize=(12, 4.8), dpi=DPI)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    _draw_fleets(left, plan)
    _draw_cost_by_size(right, plan)
    figure.tight_layout()
    figure.canvas.draw()  # fixes the limits and layout the labels are placed against
    _place_labels(left, plan)
    return figure


def fleet_labels(plan: Plan) -> list[tuple[Validation, str]]:
    """The plan and each GPU type's cheapest passing fleet alone, with the text naming it."""
    labels = [(plan.best, f"plan: {describe(plan.best.fleet)}")]
    alone = sorted((v for v in plan.homogeneous.values() if v is not None),
                   key=lambda v: v.cost_per_hour)
    labels += [(v, describe(v.fleet)) for v in alone if v.fleet != plan.best.fleet]
    return labels


def dollars(value: float, decimals: int | None = None) -> str:
    """`$12`, `$0.05`, `$1,200`: with `decimals`, or as few as the value needs (at most 6).
    Nothing below zero (a tick a hair below $0 is $0)."""
    if value < -1e-9:
        return ""
    value = max(value, 0.0)
    if decimals is not None:
        return f"${value:,.{decimals}f}"
    return f"${value:,.6f}".rstrip("0").rstrip(".")


class DollarFormatter(Formatter):
    """Dollar tick labels: on a linear axis all with the decimals the tick step needs
    (`$0.30`, `$0.32`), on a log axis each with its own (`$0.01`, `$0.1`, `$1`)."""

    def __init__(self, log: bool) -> None:
        self.log = log
        self.decimals: int | None = None

    def set_locs(self, locs: Sequence[float]) -> None:
        super().set_locs(locs)
        steps = np.diff(np.sort(np.asarray(locs, float)))
        if self.log or not len(steps):
            self.decimals = None
        else:  # the decimals of the step itself: 0.25 -> 2, 2.5 -> 1, 5 -> 0
            self.decimals = len(f"{steps.min():.6f}".rstrip("0").partition(".")[2])

    def __call__(self, value: float, position: int | None = None) -> str:
        return dollars(value, self.decimals)


def _draw_fleets(axes: Axes, plan: Plan) -> None:
    floor = max(0.0, plan.demand.attainment - 0.2)
    simulated = plan.search.simulated
    shown = [v for v in simulated if v.judgement.worst >= floor]
    kinds = {"one GPU type": [v for v in shown if len(v.fleet) == 1 and not v.judgement.overload],
             "mixed": [v for v in shown if len(v.fleet) > 1 and not v.judgement.overload],
             "queue grows (fails)": [v for v in shown if v.judgement.overload]}
    for (label, fleets), color in zip(kinds.items(), ("C0", "C1", "C2"), strict=True):
        if fleets:
            axes.scatter([v.cost_per_hour for v in fleets], [v.judgement.worst for v in fleets],
                         label=label, s=DOT, color=color)
    axes.scatter([plan.best.cost_per_hour], [plan.best.judgement.worst], marker="*", s=STAR,
                 color="black", label="plan")
    axes.axhline(plan.demand.attainment, color="grey", linestyle=":", label="target")
    hidden = len(simulated) - len(shown)
    axes.set(xlabel="fleet cost per hour (rented GPUs)", ylabel="worst tier's attainment",
             title=f"{len(simulated)} fleets simulated"
             + (f" ({hidden} below {floor:.0%} attainment not shown)" if hidden else ""),
             ylim=(floor, 1 + HEADROOM * (1 - floor)))
    axes.margins(x=0.08)
    _dollar_axis(axes, "x", [v.cost_per_hour for v in shown])
    axes.legend(fontsize=8)


def _draw_cost_by_size(axes: Axes, plan: Plan) -> None:
    strict = plan.demand.strictest
    output = float(np.median(plan.demand.trace.output_tokens))
    every = []
    for name, offer in plan.offers.items():
        costs = []
        for prompt in PROMPT_SIZES:
            capacity = replica_capacity(offer.replica, prompt, output, strict)
            ok = capacity.meets_slo and capacity.rate > 0
            # $ per 1k requests: the rent of the replica time 1k requests take at capacity
            costs.append(rent_usd(offer.replica.price_per_hour, 1e3 / capacity.rate)
                         if ok else np.nan)
        axes.plot(PROMPT_SIZES, costs, marker="o", label=name)
        every += costs
    axes.set(xscale="log", xlabel=f"prompt tokens (output {output:.0f})",
             ylabel="cost per 1k requests at full load",
             title="Cost per request by size (strictest targets)")
    axes.set_xticks(PROMPT_SIZES, [str(size) for size in PROMPT_SIZES])
    axes.xaxis.set_minor_locator(NullLocator())
    _dollar_axis(axes, "y", every)
    axes.legend(fontsize=8)


def _dollar_axis(axes: Axes, which: str, values: Sequence[float]) -> None:
    """Dollar tick labels on the x or y axis; a log scale when `values` span over `WIDE`
    times, with 1-2-5 ticks within two decades and one a decade beyond."""
    finite = [value for value in values if math.isfinite(value)]
    axis = axes.xaxis if which == "x" else axes.yaxis
    log = bool(finite) and min(finite) > 0 and max(finite) / min(finite) > WIDE
    if log:
        axes.set(**{f"{which}scale": "log"})
        decades = math.log10(max(finite) / min(finite))
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(DollarFormatter(log))


def _place_labels(axes: Axes, plan: Plan) -> None:
    """Annotate each fleet of `fleet_labels` where its label overlaps the fewest labels
    already placed and the legend, then the edge of the axes, then other fleets' markers.
    The legend is pinned where it was drawn, so it cannot move onto a label later."""
    renderer = axes.figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    legend = axes.get_legend()
    drawn = legend.get_window_extent(renderer)
    legend.set_loc(tuple(drawn.transformed(axes.transAxes.inverted()).p0))
    markers = [(v.fleet, _square(axes, v, _radius(DOT))) for v in plan.search.simulated]
    markers.append((plan.best.fleet, _square(axes, plan.best, _radius(STAR))))
    placed = [drawn]
    for fleet, text in fleet_labels(plan):
        bold = fleet is plan.best
        reach = math.sqrt(STAR if bold else DOT) / 2 + GAP  # points
        others = [box for marked, box in markers if marked != fleet.fleet]
        scored = []
        for distance in DISTANCES:
            for dx, dy in DIRECTIONS:
                offset = (dx * reach * distance, dy * reach * distance)
                note = _annotate(axes, fleet, text, offset, bold)
                box = note.get_window_extent(renderer)
                note.remove()
                outside = box.width * box.height - _overlap(box, frame)
                scored.append((100 * sum(_overlap(box, other) for other in placed)
                               + 10 * outside + sum(_overlap(box, other) for other in others),
                               offset, distance, box))
        _, offset, distance, box = min(scored, key=lambda item: item[0])
        _annotate(axes, fleet, text, offset, bold, leader=distance > DISTANCES[0])
        placed.append(box)


def _annotate(axes: Axes, fleet: Validation, text: str, offset: tuple[float, float],
              bold: bool, leader: bool = False) -> Annotation:
    dx, dy = offset
    return axes.annotate(
        text, (fleet.cost_per_hour, fleet.judgement.worst), xytext=offset,
        textcoords="offset points", fontsize=8, fontweight="bold" if bold else "normal",
        ha="left" if dx > 0 else "right" if dx < 0 else "center",
        va="bottom" if dy > 0 else "top" if dy < 0 else "center",
        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
              "alpha": 0.8},
        arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if leader else None)


def _radius(area: float) -> float:
    """A marker's radius in pixels at DPI, from its area in points^2."""
    return math.sqrt(area) / 2 * DPI / 72


def _square(axes: Axes, fleet: Validation, radius: float) -> Bbox:
    x, y = axes.transData.transform((fleet.cost_per_hour, fleet.judgement.worst))
    return Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)


def _overlap(one: Bbox, other: Bbox) -> float:
    both = Bbox.intersection(one, other)
    return 0.0 if both is None else both.width * both.height

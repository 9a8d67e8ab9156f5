"""Plans for a routed mix: a teacher and a distilled student behind one name.

The live router (`tandem.routing.models`) gives a request to the student when the student's
quality for its tier reaches the tier's floor, and the student's pools are cheaper per
request on every GPU type (a smaller model on the same hardware). So the planner splits
the trace by tier: the requests of the tiers the student may serve form the student's
demand, the rest the teacher's, and each is planned like any single-model trace (the
cheapest mixed fleet, validated in the simulator with the live router). The saving is the
two fleets' rent against a teacher-only fleet planned for the whole trace at the same
targets. Each request keeps the tier it was drawn in the whole trace.

A simplification, said in the report: the split is by quality only; a routed mix where the
student's pools are full and the teacher's idle would also send some student-eligible
requests to the teacher, which two separate fleets do not model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tandem.catalog import Catalog, ModelProfile
from tandem.errors import UserError
from tandem.planner.demand import Tier, build_demand
from tandem.planner.plan import Plan, make_plan
from tandem.planner.trace import Trace


@dataclass(frozen=True)
class RoutedPlan:
    """The teacher-only plan and the two fleets of the routed mix."""

    teacher_only: Plan
    student: Plan | None  # None: the student reaches no tier's floor
    teacher: Plan | None  # None: the student takes every request
    student_tiers: tuple[str, ...]
    student_share: float  # of the trace's requests

    @property
    def cost_per_hour(self) -> float:
        return sum(plan.best.cost_per_hour for plan in (self.student, self.teacher) if plan)

    @property
    def savings(self) -> float:
        """Rent saved against the teacher-only fleet (a fraction of its rent)."""
        return 1.0 - self.cost_per_hour / self.teacher_only.best.cost_per_hour


def student_tiers(tiers: Sequence[Tier], quality: Mapping[str, float]) -> tuple[str, ...]:
    """The tiers whose requests the student may take: its quality reaches the tier's
    `min_quality` (a tier without a floor takes any model; a tier the student was not
    measured on, one with a floor, none)."""
    allowed = []
    for tier in tiers:
        floor = tier.min_quality
        if floor is None or (tier.name in quality and quality[tier.name] >= floor):
            allowed.append(tier.name)
    return tuple(allowed)


def parse_quality(text: str) -> tuple[str, dict[str, float]]:
    """`llama-3.1-8b:interactive=0.8,batch=0.95` (the `--student` flag) -> (model, quality)."""
    model, colon, rest = text.partition(":")
    if not colon or not model.strip():
        raise UserError(f"--student {text!r}: expected MODEL:TIER=EXACT_MATCH,... "
                        "(e.g. llama-3.1-8b:standard=0.93,batch=0.95)")
    quality = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        tier, equals, value = item.partition("=")
        try:
            score = float(value)
        except ValueError:
            score = -1.0
        if not equals or not 0 <= score <= 1:
            raise UserError(f"--student {text!r}: {item!r} is not TIER=EXACT_MATCH with the "
                            "exact match in [0, 1]")
        quality[tier.strip()] = score
    return model.strip(), quality


def make_routed_plan(trace: Trace, catalog: Catalog, teacher: ModelProfile,
                     student: ModelProfile, precision: str, tiers: Sequence[Tier],
                     quality: Mapping[str, float],
                     attainment: float = 0.99, rate_scale: float = 1.0,
                     progress: Callable[[str], None] | None = None,
                     **plan_options: Any) -> RoutedPlan:
    """Teacher-only, student and teacher fleets for `trace` (see the module docstring)."""
    say = progress or (lambda message: None)
    unknown = sorted(set(quality) - {tier.name for tier in tiers})
    if unknown:
        raise UserError(f"--student: quality given for unknown tier(s) {', '.join(unknown)}")
    drawn = build_demand(trace, tiers, attainment).tier_of_request
    labelled = replace(trace, tiers=drawn)  # each request keeps its tier in every plan
    allowed = student_tiers(tiers, quality)
    to_student = np.isin(drawn, allowed)
    say(f"teacher-only fleet for all {len(trace)} requests")
    teacher_only = make_plan(labelled, catalog, teacher, precision, tiers, attainment,
                             rate_scale, progress=progress, **plan_options)
    plans: dict[str, Plan | None] = {}
    for role, model, rows in (("student", student, to_student), ("teacher", teacher, ~to_student)):
        if not rows.any():
            plans[role] = None
            continue
        say(f"{role} fleet for {int(rows.sum())} requests")
        plans[role] = make_plan(labelled.select(rows), catalog, model, precision, tiers,
                                attainment, rate_scale, progress=progress, **plan_options)
    return RoutedPlan(teacher_only, plans["student"], plans["teacher"], allowed,
                      float(to_student.mean()))


def routed_summary(routed: RoutedPlan) -> dict[str, Any]:
    """The routed plan as JSON: each fleet's mix and rent, and the saving."""
    def fleet(plan: Plan | None) -> dict[str, Any] | None:
        if plan is None:
            return None
        return {"model": plan.model.name, "mix": dict(plan.best.fleet),
                "cost_per_hour": round(plan.best.cost_per_hour, 4),
                "slo_attainment": round(plan.best.judgement.overall, 6),
                "requests": len(plan.demand.trace)}

    return {"teacher_only": fleet(routed.teacher_only), "student": fleet(routed.student),
            "teacher": fleet(routed.teacher), "student_tiers": list(routed.student_tiers),
            "student_share": round(routed.student_share, 4),
            "cost_per_hour": round(routed.cost_per_hour, 4),
            "savings_vs_teacher_only": round(routed.savings, 6)}


def render_routed(summary: dict[str, Any]) -> str:
    rows = [("fleet", "model", "requests", "mix", "$/hour", "SLO attained")]
    for role in ("teacher_only", "student", "teacher"):
        fleet = summary[role]
        if fleet is None:
            continue
        mix = " + ".join(f"{count} x {gpu}" for gpu, count in fleet["mix"].items() if count)
        rows.append((role.replace("_", "-"), fleet["model"], str(fleet["requests"]), mix,
                     f"{fleet['cost_per_hour']:.2f}", f"{fleet['slo_attainment']:.2%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    saved = summary["savings_vs_teacher_only"]
    verdict = f"{saved:.1%} saved" if saved >= 0 else (
        f"{-saved:.1%} more (at this load two fleets of whole replicas rent more than one)")
    lines.append(f"student takes {summary['student_share']:.0%} of requests (tiers: "
                 f"{', '.join(summary['student_tiers']) or 'none'}); routed rent "
                 f"${summary['cost_per_hour']:.2f}/h vs teacher-only "
                 f"${summary['teacher_only']['cost_per_hour']:.2f}/h: {verdict}")
    return "\n".join(lines)

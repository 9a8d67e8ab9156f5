"""The distillation story's closing table: shares, exact match and rent per 1k from what
the story measured."""

import pytest
from tandem.demos.distill import Capacity, DistillStoryConfig, DistillStoryResult, summary_lines


def test_the_table_shows_sizes_quality_share_and_rent_per_1k():
    config = DistillStoryConfig()
    teacher, student = config.model, config.student_model
    result = DistillStoryResult(
        teacher_version=2, student_version=1, sizes={teacher: 2_000_000, student: 1_000_000},
        quality={teacher: {"interactive": 0.9, "standard": 0.9, "batch": 0.8},
                 student: {"interactive": 0.8, "standard": 0.88, "batch": 0.8}},
        floors={"interactive": 0.9, "standard": 0.85, "batch": 0.75},
        teacher_only_em={"interactive": 0.9, "standard": 0.8, "batch": 0.7},
        live={"interactive": {teacher: (9, 10)},
              "standard": {teacher: (3, 4), student: (10, 12)},
              "batch": {student: (7, 10)}},
        teacher_only=Capacity(10.0, 0.5), routed=Capacity(12.5, 0.5))
    lines = summary_lines(result, config)
    assert lines[1].split()[:2] == [teacher, "2,000,000"]
    standard = next(line for line in lines if line.startswith("standard"))
    assert standard.split() == ["standard", "0.85", "75%", "0.81", "0.80", "0.83"]
    interactive = next(line for line in lines if line.startswith("interactive"))
    assert interactive.split()[2:] == ["0%", "0.90", "0.90", "-"]
    assert Capacity(10.0, 0.5).usd_per_1k == pytest.approx(0.5 / 36_000 * 1000)
    assert lines[-1] == "  routed vs teacher-only: +20.0% (cheaper)"


def test_a_deployment_that_met_no_step_shows_its_steps_and_no_ratio():
    config = DistillStoryConfig()
    teacher, student = config.model, config.student_model
    result = DistillStoryResult(
        2, 1, {teacher: 2, student: 1}, {teacher: {}, student: {}},
        dict.fromkeys(("interactive", "standard", "batch"), 0.5),
        dict.fromkeys(("interactive", "standard", "batch"), 0.9),
        {"interactive": {}, "standard": {}, "batch": {}},
        teacher_only=Capacity(10.0, 0.5),
        routed=Capacity(0.0, 0.5, ["2 req/s: interactive 86%, standard 100%, batch 100%"]))
    lines = summary_lines(result, config)
    assert lines[-1] == ("  routed        $0.50/h: no step met every tier's targets "
                         "(2 req/s: interactive 86%, standard 100%, batch 100%)")
    assert not any("routed vs teacher-only" in line for line in lines)


def test_capacity_rates_that_do_not_rise_are_refused_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="load_rates must rise"):
        DistillStoryConfig(load_rates=[2.0, 1.0])
    assert DistillStoryConfig(load_rates=[0.5, 1.0]).load_rates == [0.5, 1.0]

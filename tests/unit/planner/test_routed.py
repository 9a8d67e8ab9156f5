"""Plans for a routed mix: the student takes the tiers whose floor it reaches, each fleet is
planned for its share of the trace, and the saving is against a teacher-only fleet."""

import argparse
import json

import numpy as np
import pytest
from tandem.errors import UserError
from tandem.planner import cli
from tandem.planner.demand import build_demand, make_tier, parse_tier
from tandem.planner.routed import (
    make_routed_plan,
    parse_quality,
    render_routed,
    student_tiers,
)

TIERS = [make_tier("chat", 0.5, 1000, 50, min_quality=0.9),
         make_tier("bulk", 0.5, 5000, 150, min_quality=0.8)]


def test_the_student_takes_the_tiers_whose_floor_it_reaches():
    assert student_tiers(TIERS, {"chat": 0.85, "bulk": 0.85}) == ("bulk",)
    assert student_tiers(TIERS, {"chat": 0.9, "bulk": 0.8}) == ("chat", "bulk")
    assert student_tiers(TIERS, {"chat": 0.95}) == ("chat",)  # never measured on bulk
    assert student_tiers([make_tier("any", 1.0, 1000, None)], {}) == ("any",)  # no floor


def test_quality_and_floors_parse_and_bad_ones_name_the_problem():
    assert parse_quality("llama-3.1-8b:chat=0.9, bulk=1") == ("llama-3.1-8b",
                                                              {"chat": 0.9, "bulk": 1.0})
    assert parse_tier("chat:share=1,ttft_ms=500,min_quality=0.9").min_quality == 0.9
    for text in ("llama-3.1-8b", "llama-3.1-8b:chat=1.2", "llama-3.1-8b:chat=high", ":chat=1"):
        with pytest.raises(UserError, match="--student"):
            parse_quality(text)
    with pytest.raises(UserError, match="min_quality must be in"):
        parse_tier("chat:share=1,ttft_ms=500,min_quality=2")


def test_each_fleet_serves_its_share_and_the_saving_is_against_teacher_only(catalog,
                                                                            conv_slice):
    trace = conv_slice.scaled(2.0)
    routed = make_routed_plan(trace, catalog, catalog.model("llama-3.1-70b"),
                              catalog.model("llama-3.1-8b"), "fp8", TIERS,
                              {"chat": 0.85, "bulk": 0.9}, gpus=["H100", "L4"])
    drawn = build_demand(trace, TIERS, 0.99).tier_of_request
    assert routed.student_tiers == ("bulk",)
    assert routed.student_share == pytest.approx(np.mean(drawn == "bulk"))
    assert len(routed.student.demand.trace) + len(routed.teacher.demand.trace) == len(trace)
    assert set(routed.student.demand.tier_of_request) == {"bulk"}  # tiers kept as drawn
    for plan in (routed.teacher_only, routed.student, routed.teacher):
        assert plan.best.judgement.passes
    total = routed.student.best.cost_per_hour + routed.teacher.best.cost_per_hour
    assert routed.cost_per_hour == pytest.approx(total)
    assert routed.savings == pytest.approx(1 - total / routed.teacher_only.best.cost_per_hour)
    assert routed.student.model.name == "llama-3.1-8b"


def test_the_cli_prints_both_fleets_and_refuses_what_it_cannot_plan(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    base = ["--model", "llama-3.1-70b", "--precision", "fp8", "--gpus", "H100",
            "--tier", "chat:share=0.5,ttft_ms=1000,tpot_ms=50,min_quality=0.9",
            "--tier", "bulk:share=0.5,ttft_ms=5000,tpot_ms=150,min_quality=0.8",
            "--out", str(tmp_path), "--no-plot", "--rate-scale", "0.5"]
    with pytest.raises(UserError, match="unknown tier"):
        cli.run(parser.parse_args([*base, "--student", "llama-3.1-8b:chta=0.9"]))
    with pytest.raises(UserError, match="emit-serve-config"):
        cli.run(parser.parse_args([*base, "--student", "llama-3.1-8b:chat=0.9",
                                   "--emit-serve-config", str(tmp_path / "x.yaml")]))
    assert cli.run(parser.parse_args([*base, "--student", "llama-3.1-8b:bulk=0.9", "--json"])) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["student_tiers"] == ["bulk"] and summary["student"]["model"] == "llama-3.1-8b"
    assert summary["teacher"]["model"] == summary["teacher_only"]["model"] == "llama-3.1-70b"
    routed_rent = summary["student"]["cost_per_hour"] + summary["teacher"]["cost_per_hour"]
    assert summary["cost_per_hour"] == pytest.approx(routed_rent, abs=1e-3)
    assert summary["savings_vs_teacher_only"] == pytest.approx(
        1 - routed_rent / summary["teacher_only"]["cost_per_hour"], abs=1e-3)
    # at a low rate two fleets of whole replicas can rent more than one: said, not hidden
    saved = summary["savings_vs_teacher_only"]
    expected = f"{saved:.1%} saved" if saved >= 0 else f"{-saved:.1%} more"
    assert expected in render_routed(summary)

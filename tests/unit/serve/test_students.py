"""Students in the Serve config and the route table: own pools, quality from tags, and the
models a request for the teacher's name is routed across."""

from pathlib import Path

import pytest
from tandem.errors import UserError
from tandem.routing.models import LiveQuality
from tandem.serve.config import load_serve_config
from tandem.serve.students import quality_of, served_models, student_entry

REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO / "apps" / "serve.local.yaml"


def test_a_student_takes_its_own_pools_and_leaves_the_teacher_the_rest():
    config = load_serve_config(LOCAL, {"students": [
        {"model": "models:/tandem-tiny-student@champion", "pools": ["cheap"]}]})
    assert config.teacher_pools() == ["fast"]
    assert load_serve_config(LOCAL).teacher_pools() == ["fast", "cheap"]


@pytest.mark.parametrize("students, message", [
    ([{"model": "models:/s@champion", "pools": ["fast", "cheap"]}], "leave at least one"),
    ([{"model": "models:/s@champion", "pools": ["gpu"]}], "pool 'gpu' is not in pools"),
    ([{"model": "models:/s@champion", "pools": ["cheap"]},
      {"model": "models:/t@champion", "pools": ["cheap"]}], "given to both s and t"),
    ([{"model": "models:/tandem-tiny@champion", "pools": ["cheap"]}], "is the served model"),
    ([{"model": "/tmp/student", "pools": ["cheap"]}], "not a registry URI"),
    ([{"model": "models:/s@champion", "pools": []}], "at least 1 item"),
])
def test_bad_students_are_user_errors_naming_the_problem(students, message):
    with pytest.raises(UserError, match=message):
        load_serve_config(LOCAL, {"students": students})


def test_quality_comes_from_the_version_tags():
    tags = {"tandem.quality.batch": "0.95", "tandem.quality.standard": "0.9",
            "tandem.quality.interactive": "n/a", "tandem.eval_exact_match": "0.5"}
    assert quality_of(tags) == {"batch": 0.95, "standard": 0.9}


def _route(pool, model, version):
    return {"app": f"{model}-{pool}-v{version}", "deployment": f"{pool}:{model}",
            "version": version, "gpu": "cpu", "price_per_hour": 0.1, "replicas": 1}


def test_a_request_for_the_teacher_is_routed_across_it_and_its_students_at_their_versions():
    canary = {"version": 3, "share": 0.5, "pools": {"cheap": _route("cheap", "small", 3)}}
    models = {
        "big": {"version": 7, "pools": {"fast": _route("fast", "big", 7)}, "students": ["small"],
                "quality": {"batch": 0.97}},
        "small": {**student_entry("big", 2, {"cheap": _route("cheap", "small", 2)},
                                  {"batch": 0.9}), "canary": canary},
    }
    live = LiveQuality(min_rated=2)
    for right in (True, False):
        live.rate("small", 3, right)
    served, routes = served_models(models, "big", 0.9, live)  # outside the canary's share
    assert [(m.name, m.version, m.pools, m.reference) for m in served] == [
        ("big", 7, ("fast",), True), ("small", 2, ("cheap",), False)]
    assert served[1].quality == {"batch": 0.9} and served[1].live_quality is None
    assert routes["cheap"]["version"] == 2 and routes["fast"]["version"] == 7
    served, routes = served_models(models, "big", 0.1, live)  # inside it
    assert served[1].version == 3 and served[1].live_quality == 0.5 and served[1].rated == 2
    assert routes["cheap"]["version"] == 3
    assert served[1].quality == {"batch": 0.9}  # a canary without its own: the champion's
    canary["quality"] = {"batch": 0.6}  # a canary scored on its own (`start_canary`)
    served, _ = served_models(models, "big", 0.1, live)
    assert served[1].quality == {"batch": 0.6}
    assert served_models(models, "big", 0.9, live)[0][1].quality == {"batch": 0.9}

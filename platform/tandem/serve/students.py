"""Students: smaller models answering under their teacher's name.

A student (`students:` in the Serve config) is a registered model of its own, distilled
from the teacher (`jobs/distill.py`), served on its own pools. In the route table it is a
model entry like any other (its pools, version, canary; promote and rollback swap it like
any model) plus `student_of: <teacher>` and its `quality` per tier, read from its version's
`tandem.quality.<tier>` tags (a canary carries its own version's); the teacher's entry
lists its `students`. A request for the
teacher's name is routed across the teacher and its students (`served_models`, then
`tandem.routing.models.pick_model_pool`): the cheapest (model, pool) predicted to meet
the request's latency targets and its quality floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tandem.registry import QUALITY_TAG
from tandem.routing.models import LiveQuality, ServedModel
from tandem.serve.routes import canary_or_champion


def quality_of(tags: Mapping[str, str]) -> dict[str, float]:
    """Tier -> exact match from a version's `tandem.quality.<tier>` tags."""
    quality = {}
    for key, value in tags.items():
        if key.startswith(QUALITY_TAG):
            try:
                quality[key.removeprefix(QUALITY_TAG)] = float(value)
            except ValueError:
                continue  # a hand-edited tag that is no number: as if never measured
    return quality


def read_quality(name: str, version: int, settings) -> dict[str, float]:
    from tandem.registry import version_tags

    return quality_of(version_tags(name, version, settings.mlflow_url))


def student_entry(teacher: str, version: int, routes: dict[str, Any],
                  quality: dict[str, float]) -> dict[str, Any]:
    return {"version": version, "pools": routes, "student_of": teacher, "quality": quality}


def served_models(models: Mapping[str, Any], name: str, draw: float,
                  live: LiveQuality) -> tuple[list[ServedModel], dict[str, Any]]:
    """The models answering for `name`, teacher first, at the versions a request drawing
    `draw` goes to (each model's canary or champion), and pool -> route over all of them."""
    served, routes = [], {}
    for member in [name, *models[name].get("students", [])]:
        entry = models.get(member)
        if entry is None or not entry["pools"]:
            continue
        target = canary_or_champion(entry, draw)
        version = int(target["version"])
        quality, rated = live.of(member, version)
        served.append(ServedModel(member, version, tuple(target["pools"]),
                                  target.get("quality", entry.get("quality", {})),
                                  reference=member == name,
                                  live_quality=quality, rated=rated))
        routes.update(target["pools"])
    return served, routes

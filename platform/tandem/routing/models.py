"""Routing across models: one logical model served by a teacher and its distilled students.

Every pool serves one registered model. A model may take a request only if its quality
reaches the request's floor (`x-tandem-min-quality`, else its tier's `min_quality`):
its live exact match once enough of its answers were rated (`LiveQuality`), else the
exact match recorded on its version per tier (`tandem.quality.<tier>`). A student with
neither gets a request only when there is no floor. The teacher (the reference) is the
fallback: when no model reaches the floor, or its own quality was never measured, it is
admitted. The pools of the admitted models then go to the pool policy, which picks the
cheapest predicted to meet the latency targets: so the (model, pool) chosen is the
cheapest pair predicted to meet the latency targets and the floor, and no model is picked
whose quality, as known, is below the floor, unless none reaches it (the decision then
says so). Pure, like every policy: feedback comes in through `LiveQuality.rate`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tandem.routing.policy import RoutingPolicy
from tandem.routing.types import Decision, PoolState, RequestFeatures
from tandem.tenants import bounded_by_tenant

MIN_RATED = 10  # rated answers before live quality replaces the recorded one
LIVE_WINDOW = 50  # the most recent rated answers of each tenant live quality is measured over


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One registered model behind a logical name, as the router sees it."""

    name: str
    version: int
    pools: tuple[str, ...]
    quality: Mapping[str, float] = field(default_factory=dict)  # tier -> exact match in [0, 1]
    reference: bool = False  # the teacher: admitted when no model reaches the floor
    live_quality: float | None = None  # exact match of its last rated answers, once enough
    rated: int = 0  # answers that live quality is measured over

    def expected_quality(self, tier: str) -> float | None:
        """Its exact match for a request of `tier`: live once enough answers were rated,
        else the one recorded for the tier; None: never measured."""
        if self.live_quality is not None:
            return self.live_quality
        return self.quality.get(tier)

    def quality_source(self, tier: str) -> str:
        """Where `expected_quality` comes from, for a decision's reason."""
        if self.live_quality is not None:
            return f"live over {self.rated} rated answers"
        return f"recorded for {tier}"


def admit_models(models: Sequence[ServedModel], tier: str,
                 floor: float | None) -> tuple[list[ServedModel], list[str]]:
    """The models that may take a request of `tier` with quality `floor`, and one note per
    model left out (or why the reference was let in below the floor)."""
    if floor is None:
        return list(models), []
    admitted, notes = [], []
    for model in models:
        quality = model.expected_quality(tier)
        if quality is None and model.reference:
            admitted.append(model)
        elif quality is None:
            notes.append(f"{model.name} v{model.version} left out: no quality measured for "
                         f"{tier} (floor {floor:g})")
        elif quality >= floor:
            admitted.append(model)
        else:
            notes.append(f"{model.name} v{model.version} left out: quality {quality:.2f} "
                         f"({model.quality_source(tier)}) below floor {floor:g}")
    if not admitted:
        references = [model for model in models if model.reference] or [
            max(models, key=lambda m: m.expected_quality(tier) or 0.0)]
        admitted = references
        notes.append(f"no model reaches floor {floor:g}: {references[0].name} "
                     f"v{references[0].version} serves")
    return admitted, notes


def pick_model_pool(policy: RoutingPolicy, request: RequestFeatures, floor: float | None,
                    models: Sequence[ServedModel], pools: Sequence[PoolState],
                    now: float) -> tuple[ServedModel, Decision]:
    """The model and the decision of `policy` among the admitted models' pools (each of
    `pools` serves one of `models`); the decision names the model, and its reason ends
    with the notes on the models left out."""
    admitted, notes = admit_models(models, request.tier, floor)
    if len(admitted) < len(models):
        allowed = {pool for model in admitted for pool in model.pools}
        pools = [pool for pool in pools if pool.name in allowed]
    decision = policy.pick_pool(request, pools, now)
    for chosen in admitted:
        if decision.pool in chosen.pools:
            break
    decision.model = chosen.name
    if notes:
        decision.reason = f"{decision.reason}; {'; '.join(notes)}"
    return chosen, decision


class LiveQuality:
    """Exact match of each model version's recently rated answers.

    An answer counts as right when its feedback score is positive and any correction
    equals it: the same judgement as the loop's exact-match scoring, made by a person.
    Each tenant's last `window` ratings are kept apart, so a tenant rating in bulk cannot
    push the others' ratings out, and no tenant is over half of the evidence once two have
    rated (`tandem.tenants.bounded_by_tenant`).
    """

    def __init__(self, window: int = LIVE_WINDOW, min_rated: int = MIN_RATED) -> None:
        self._window = window
        self._min_rated = min_rated
        self._rated: dict[tuple[str, int], dict[str | None, deque[bool]]] = {}
        self._quality: dict[tuple[str, int], tuple[float | None, int]] = {}  # what `of` answers

    def rate(self, model: str, version: int, right: bool, tenant: str | None = None) -> None:
        """One more rating; the version's live quality is worked out here, on the feedback
        path, so that `of`, on the routing path, is one dict read."""
        by_tenant = self._rated.setdefault((model, version), {})
        by_tenant.setdefault(tenant, deque(maxlen=self._window)).append(right)
        # each tenant's ratings oldest first: the bound drops the largest tenant's oldest
        rated = [(tenant, answer) for tenant, answers in by_tenant.items() for answer in answers]
        evidence = bounded_by_tenant(rated, lambda answer: answer[0])
        quality = (sum(answer for _, answer in evidence) / len(evidence)
                   if len(evidence) >= self._min_rated else None)
        self._quality[(model, version)] = (quality, len(evidence))

    def of(self, model: str, version: int) -> tuple[float | None, int]:
        """(live exact match, answers it stands on); None until `min_rated` answers are:
        each tenant's last `window` ratings, the largest tenant bounded by the others."""
        return self._quality.get((model, version), (None, 0))


def judged_right(score: float, correction: str | None, response: str | None) -> bool:
    """Whether one rated answer was right (`score` normalised to [-1, 1])."""
    if score <= 0:
        return False
    return correction is None or response is None or correction.strip() == response.strip()

"""The rollout controller against an in-memory registry and serving (its injected world)."""

from dataclasses import dataclass, field

import pytest
from tandem.rollout.controller import FEEDBACK_EM, REASON, STAGE, Rollout, RolloutOps
from tandem.rollout.verdicts import LiveStats, OfflineScores, RolloutConfig

CONFIG = RolloutConfig(canary_min_requests=10, canary_max_s=600, watch_promoted_s=300)


@dataclass
class World:
    """Versions' aliases and tags, what serving does, and what each version delivers."""

    aliases: dict = field(default_factory=lambda: {"champion": 1, "challenger": 2, "previous": None})
    tags: dict = field(default_factory=lambda: {1: {}, 2: {}})
    scores: dict = field(default_factory=lambda: {1: OfflineScores(0.9, 0.1), 2: OfflineScores(0.9, 0.8)})
    stats: dict = field(default_factory=lambda: {1: LiveStats(50, 0), 2: LiveStats(12, 0)})
    actions: list = field(default_factory=list)
    crash_on: str | None = None

    def _do(self, action: str) -> None:
        if self.crash_on == action:
            self.crash_on = None
            raise RuntimeError(f"crashed during {action}")
        self.actions.append(action)

    # as `tandem.serve.deploy.serve_champion`: the aliases move once the version serves, so a
    # swap that fails leaves them
    def promote(self, version: int) -> None:
        self._do(f"promote v{version}")
        self.aliases.update(previous=self.aliases["champion"], champion=version)

    def rollback(self) -> None:
        self._do("rollback")
        self.aliases.update(champion=self.aliases["previous"], previous=self.aliases["champion"])

    def ops(self) -> RolloutOps:
        return RolloutOps(
            aliases=lambda: dict(self.aliases), tags=lambda v: dict(self.tags[v]),
            set_tags=lambda v, tags: self.tags[v].update(tags),
            score=lambda a, b: (self.scores[a], self.scores[b]), live=lambda v, since, until: self.stats[v],
            start_canary=lambda v: self._do(f"canary v{v}"),
            stop_canary=lambda: self._do("stop canary"), promote=self.promote,
            rollback=self.rollback)


def rollout(world: World) -> Rollout:
    return Rollout(CONFIG, world.ops(), log=lambda _: None)


def test_a_better_challenger_is_canaried_then_promoted():
    world = World()
    assert rollout(world).tick(100.0).action == "canary"
    assert world.tags[2][STAGE] == "canary" and world.tags[2][FEEDBACK_EM] == "0.8000"
    assert world.actions == ["canary v2"]
    assert rollout(world).tick(200.0).action == "promote"  # a restarted controller goes on
    assert world.actions == ["canary v2", "promote v2"]
    assert world.aliases["champion"] == 2 and world.tags[2][STAGE] == "promoted"


def test_a_worse_challenger_is_rejected_without_a_canary():
    world = World()
    world.scores[2] = OfflineScores(0.9, 0.1)
    assert rollout(world).tick(100.0).action == "reject"
    assert world.tags[2][STAGE] == "rejected" and "below" in world.tags[2][REASON]
    assert rollout(world).tick(200.0) is None and world.actions == []


def test_a_canary_that_errors_is_stopped_and_rejected():
    world = World()
    controller = rollout(world)
    controller.tick(100.0)
    world.stats[2] = LiveStats(12, 3)
    assert controller.tick(200.0).action == "reject"
    assert world.actions == ["canary v2", "stop canary"] and world.aliases["champion"] == 1


def test_a_crash_between_tag_and_promotion_is_repaired_next_tick():
    world = World()
    controller = rollout(world)
    controller.tick(100.0)
    world.crash_on = "promote v2"
    try:
        controller.tick(200.0)
    except RuntimeError:
        pass
    assert world.aliases["champion"] == 1 and world.tags[2][STAGE] == "promoted"
    assert controller.tick(210.0).action == "promote"
    assert world.aliases["champion"] == 2 and world.actions.count("promote v2") == 1


def promoted() -> tuple[World, Rollout]:
    """A world whose challenger v2 was canaried (tick 100) and promoted (tick 200)."""
    world = World()
    controller = rollout(world)
    controller.tick(100.0)
    controller.tick(200.0)
    return world, controller


def test_a_promoted_version_that_regresses_is_rolled_back_once():
    world, controller = promoted()
    world.stats[2] = LiveStats(30, 5)
    assert controller.tick(260.0).action == "rollback"
    assert world.aliases["champion"] == 1 and world.tags[2][STAGE] == "rolled_back"
    assert controller.tick(300.0) is None  # v2 is the rejected past, v1 is not under watch
    assert world.actions == ["canary v2", "promote v2", "rollback"]


def test_a_rollback_that_fails_leaves_the_version_under_watch_and_is_tried_again():
    world, controller = promoted()
    world.stats[2] = LiveStats(30, 5)
    world.crash_on = "rollback"  # the swap back failed: v2 still serves and is champion
    with pytest.raises(RuntimeError):
        controller.tick(260.0)
    assert world.aliases["champion"] == 2 and world.tags[2][STAGE] == "promoted"
    assert controller.tick(270.0).action == "rollback"
    assert world.aliases["champion"] == 1 and world.tags[2][STAGE] == "rolled_back"
    assert world.tags[1][STAGE] == "stable"
    assert world.actions == ["canary v2", "promote v2", "rollback"]


def test_a_version_rolled_back_before_its_stage_was_written_is_not_promoted_again():
    world, controller = promoted()
    world.rollback()  # `tandem rollback` by hand, or a rollback interrupted before its stages
    assert controller.tick(260.0).action == "rollback"
    assert world.aliases["champion"] == 1 and world.tags[2][STAGE] == "rolled_back"
    assert world.tags[1][STAGE] == "stable"
    assert controller.tick(300.0) is None
    assert world.actions == ["canary v2", "promote v2", "rollback"]


def test_a_promoted_version_that_holds_up_becomes_stable():
    world, controller = promoted()
    assert controller.tick(250.0).action == "keep"
    assert controller.tick(500.0).action == "stable" and world.tags[2][STAGE] == "stable"
    assert controller.tick(600.0) is None


def test_nothing_happens_without_a_distinct_challenger():
    world = World(aliases={"champion": 1, "challenger": 1, "previous": None})
    assert rollout(world).tick(100.0) is None and world.actions == []

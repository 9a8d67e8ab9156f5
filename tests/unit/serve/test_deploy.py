"""`tandem deploy`'s Serve proxy (where it listens comes from the settings, not the YAML),
and the swap's order of steps against an in-memory Serve and route table: a swap that fails
puts back what it changed."""

import pytest
from tandem.errors import UserError
from tandem.serve.deploy import PoolMove, SwapFailed, failure_reason, move_pools, proxy_options
from tandem.settings import load_settings


def test_the_proxy_binds_tandem_host_and_api_port():
    assert proxy_options(load_settings({}))["http_options"] == {"host": "127.0.0.1", "port": 8000}
    exposed = load_settings({"TANDEM_HOST": "0.0.0.0", "TANDEM_API_PORT": "8100"})
    assert proxy_options(exposed) == {"http_options": {"host": "0.0.0.0", "port": 8100},
                                      "proxy_location": "HeadOnly"}


class Serving:
    """A `PoolOps`: Serve applications by state and the route table (pool -> app), in memory.
    An action listed in `failing` raises once, after its effect (an application that
    failed to start is there, failed; a switch whose acknowledgement timed out is in the
    table)."""

    def __init__(self, table: dict[str, str], running: set[str], failing=()) -> None:
        self.table = dict(table)
        self.apps = dict.fromkeys(running, "RUNNING")
        self.failing = dict(failing)
        self.actions: list[str] = []

    def _do(self, action: str) -> None:
        self.actions.append(action)
        if action in self.failing:
            raise self.failing.pop(action)

    def exists(self, app):
        return self.apps.get(app) == "RUNNING"

    def start(self, route):
        if self.exists(route["app"]):
            return
        self.apps[route["app"]] = "FAILED"
        self._do(f"start {route['app']}")
        self.apps[route["app"]] = "RUNNING"

    def switch(self, pool, route):
        self.table[pool] = route["app"]
        self._do(f"switch {pool} to {route['app']}")
        return len(self.actions)

    def retire(self, pool, app, epoch):
        self._do(f"retire {app}" + (" after a drain" if epoch is not None else ""))
        del self.apps[app]


def route(pool: str, version: int) -> dict:
    return {"pool": pool, "version": version, "app": f"m-{pool}-v{version}"}


MOVES = [PoolMove(pool, route(pool, 1), route(pool, 2)) for pool in ("fast", "cheap")]
BEFORE = {"fast": "m-fast-v1", "cheap": "m-cheap-v1"}


def swap(serving: Serving) -> None:
    move_pools(MOVES, serving, lambda: serving, log=lambda _: None)


def test_a_swap_moves_one_pool_at_a_time_and_removes_the_old_version():
    serving = Serving(BEFORE, set(BEFORE.values()))
    swap(serving)
    assert serving.actions == [
        "start m-fast-v2", "switch fast to m-fast-v2", "retire m-fast-v1 after a drain",
        "start m-cheap-v2", "switch cheap to m-cheap-v2", "retire m-cheap-v1 after a drain"]
    assert serving.table == {"fast": "m-fast-v2", "cheap": "m-cheap-v2"}
    assert set(serving.apps) == {"m-fast-v2", "m-cheap-v2"}


def test_a_version_that_cannot_start_leaves_serving_as_it_was():
    serving = Serving(BEFORE, set(BEFORE.values()),
                      {"start m-fast-v2": UserError("Serve application m-fast-v2 failed")})
    with pytest.raises(UserError, match="m-fast-v2 failed"):
        swap(serving)
    assert serving.actions == ["start m-fast-v2", "retire m-fast-v2"]  # never routed to
    assert serving.table == BEFORE and serving.apps == dict.fromkeys(BEFORE.values(), "RUNNING")


def test_a_failure_on_a_later_pool_puts_the_moved_pools_back():
    serving = Serving(BEFORE, set(BEFORE.values()), {"start m-cheap-v2": SwapFailed("timed out")})
    with pytest.raises(SwapFailed, match="timed out"):
        swap(serving)
    assert serving.actions[3:] == [
        "start m-cheap-v2", "retire m-cheap-v2",  # the failed pool first
        "start m-fast-v1", "switch fast to m-fast-v1", "retire m-fast-v2 after a drain"]
    assert serving.table == BEFORE and serving.apps == dict.fromkeys(BEFORE.values(), "RUNNING")


def test_a_switch_that_times_out_is_switched_back_before_the_new_version_goes():
    serving = Serving(BEFORE, set(BEFORE.values()),
                      {"switch fast to m-fast-v2": SwapFailed("timed out waiting for the ingress")})
    with pytest.raises(SwapFailed):
        swap(serving)
    assert serving.actions == ["start m-fast-v2", "switch fast to m-fast-v2",
                               "switch fast to m-fast-v1", "retire m-fast-v2 after a drain"]
    assert serving.table == BEFORE and set(serving.apps) == set(BEFORE.values())


def test_a_canarys_applications_are_reused_and_kept_when_the_swap_fails():
    canary = {"m-fast-v2"}  # the challenger's canary runs on the fast pool
    serving = Serving(BEFORE, set(BEFORE.values()) | canary,
                      {"start m-cheap-v2": UserError("Serve application m-cheap-v2 failed")})
    with pytest.raises(UserError):
        swap(serving)
    assert "start m-fast-v2" not in serving.actions
    assert "retire m-fast-v2" not in " ".join(serving.actions)
    assert serving.table == BEFORE and set(serving.apps) == set(BEFORE.values()) | canary


def test_a_pool_that_cannot_be_put_back_is_named():
    serving = Serving(BEFORE, set(BEFORE.values()), {
        "start m-cheap-v2": UserError("Serve application m-cheap-v2 failed"),
        "start m-fast-v1": SwapFailed("timed out")})
    with pytest.raises(SwapFailed, match="m-cheap-v2 failed; then putting back failed: "
                                         "pool fast .*may still route to v2"):
        swap(serving)
    assert serving.table["cheap"] == "m-cheap-v1" and "m-cheap-v2" not in serving.apps


def test_a_serve_failure_is_told_by_its_exception_line():
    message = ("Deploying app 'm-fast-v2' failed with exception:\nTraceback (most recent call "
               "last):\n  File \"x.py\", line 1, in f\nray.exceptions.RayTaskError(ValueError): "
               "task failed\nValueError: User-specified max_model_len (128) is greater than the "
               "derived max_model_len (64)\n")
    assert failure_reason(message) == ("ValueError: User-specified max_model_len (128) is "
                                       "greater than the derived max_model_len (64)")
    assert failure_reason("replica died\n", limit=8) == "ica died"

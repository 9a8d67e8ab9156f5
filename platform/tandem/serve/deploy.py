"""Deploy the serving stack, swap model versions blue/green, shut it down.

Layout on Ray Serve: application `tandem` (route `/`) is the ingress alone; each
(pool, model version) is its own application `<model>-<pool>-v<version>-<config hash>` holding
one LLMServer deployment. A swap goes pool by pool: start the new version's
application beside the old, wait until it is RUNNING, point the route table at it,
wait until every ingress replica has applied the new table, then delete the old
application (Serve drains its in-flight requests first). At most one extra engine
per model is alive at any time, and no request sees a missing pool. A swap that fails
puts back what it changed, the same way in reverse (`move_pools`), so the route table and
traffic are as before. A promotion moves the registry's `champion` alias only once the
version serves (`serve_champion`). A canary runs the
challenger's pool applications beside the champion's with a share of the traffic; a
promotion then swaps to those same applications, and a rejection deletes them.

LoRA adapters (`tandem.serve.adapters`) are route-table entries on their base's engines: an
adapter's swap or canary changes the table alone, and no engine starts or stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tandem.errors import UserError
from tandem.serve.adapters import (
    adapter_entry,
    adapters_on,
    engine_models,
    resolve_adapter,
)
from tandem.serve.config import ServeAppConfig
from tandem.serve.pools import Route, build_pool_application, route_for
from tandem.serve.routes import CHAT_TEMPLATE_TOKENS
from tandem.serve.students import read_quality, student_entry
from tandem.settings import Settings

INGRESS_APP = "tandem"
INGRESS_DEPLOYMENT = "TandemIngress"
Log = Callable[[str], None]


class SwapFailed(Exception):
    """A swap stopped by an internal failure: a timeout, a model it could not download, or
    a pool it could not put back. Entrypoints print its message and exit 1; a swap the
    version or the caller got wrong raises `UserError` (exit 2)."""


def connect(settings: Settings) -> None:
    """Attach this process to the stack's Ray cluster and make sure Serve listens on the API port."""
    from tandem.cluster import join_cluster

    join_cluster(settings)
    from ray import serve

    serve.start(**proxy_options(settings))


def proxy_options(settings: Settings) -> dict[str, Any]:
    """`serve.start` options: the API on the head, at TANDEM_HOST:TANDEM_API_PORT
    (127.0.0.1:8000 unless set; HAProxy's frontend, `tandem.serve.haproxy`), and the replicas'
    own HTTP ports on TANDEM_HOST too. A Serve YAML's `http_options` apply to `serve deploy`
    only."""
    return {"http_options": {"host": settings.host, "port": settings.api_port},
            "proxy_location": "HeadOnly"}


def resolve_model(config: ServeAppConfig, settings: Settings, uri: str | None = None):
    """(registered name, local dir, version) of the model a config serves."""
    from tandem.registry import download_model, parse_model_uri

    uri = uri or config.model
    name = parse_model_uri(uri)[0]
    model_dir, version = download_model(uri, settings.models_dir / "registry", settings.mlflow_url)
    return name, model_dir, version


def build_ingress_application(config: ServeAppConfig, table: dict[str, Any],
                              pools: list | None = None):
    """The ingress deployment: HTTP on `/`, routes from `table`. `pools`: pool applications
    composed into the same application (`serve deploy`); `tandem deploy` passes none and
    runs each pool as its own application."""
    from ray import serve

    from tandem.serve.ingress import TandemIngressDeployment

    deployment = serve.deployment(
        TandemIngressDeployment, name=INGRESS_DEPLOYMENT, num_replicas=config.ingress_replicas,
        max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0})
    return deployment.bind(config=config.model_dump(mode="json"), table=table, pools=pools or [])


def resolve_students(config: ServeAppConfig, settings: Settings) -> list[tuple[str, Any, int]]:
    """(registered name, local dir, version) of each student of `config`, in its order."""
    return [resolve_model(config, settings, student.model) for student in config.students]


def initial_table(config: ServeAppConfig, name: str, version: int, settings: Settings,
                  app: str | None = None, students: list[tuple[str, Any, int]] = (),
                  model_dir: Path | None = None) -> dict[str, Any]:
    """The route table of `config` serving `name` at `version` (from `model_dir`, whose chat
    template the ingress counts) on its pools, with its students (`resolve_students`; each on
    its own pools, with its quality per tier) and its adapters (each checked against that
    version: AdapterMismatch names both when one does not fit)."""
    routes = {pool: route_for(name, version, pool, config.pools[pool], app).to_dict()
              for pool in config.teacher_pools()}
    models = {name: {"version": version, "pools": routes}}
    if students:
        models[name].update(students=[student for student, _, _ in students],
                            quality=read_quality(name, version, settings))
    for spec, (student, _, student_version) in zip(config.students, students, strict=True):
        student_routes = {pool: route_for(student, student_version, pool, config.pools[pool],
                                          app).to_dict() for pool in spec.pools}
        models[student] = student_entry(name, student_version, student_routes,
                                        read_quality(student, student_version, settings))
    for uri in config.adapters:
        adapter, adapter_version = resolve_adapter(uri, name, version, settings)
        models[adapter] = adapter_entry(adapter, adapter_version, name, models[name],
                                        config.adapter_pools())
    table = {"models": models, "config": config.model_dump(mode="json")}
    if model_dir is not None:
        table[CHAT_TEMPLATE_TOKENS] = count_chat_template_tokens(model_dir)
    return table


def _chat_template_tokens_of(model_dir: str) -> int:
    from transformers import AutoTokenizer

    from tandem.data.prompts import chat_template_tokens

    return chat_template_tokens(AutoTokenizer.from_pretrained(model_dir))


def count_chat_template_tokens(model_dir: Path) -> int:
    """What the model's chat template adds to a chat request (`chat_template_tokens`),
    counted in a Ray task: a real model's tokenizer (~70 MB for SmolLM2) stays out of the
    deploying process, which may be the retraining loop's."""
    import ray

    task = ray.remote(_chat_template_tokens_of).options(num_cpus=0, max_retries=1)
    return ray.get(task.remote(str(model_dir)))


def failure_reason(message: str, limit: int = 500) -> str:
    """What a Serve status message says went wrong: from the last exception line of the
    traceback it carries to its end (a validation error lists its fields below that line),
    else the message's end; at most `limit` characters."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for at in range(len(lines) - 1, -1, -1):
        head = lines[at].split(":", 1)[0]
        if ":" in lines[at] and head.replace(".", "").isidentifier() \
                and head.endswith(("Error", "Exception")):
            reason = " ".join(lines[at:])
            return reason if len(reason) <= limit else reason[:limit - 3] + "..."
    return " ".join(lines)[-limit:]


def _wait_running(apps: list[str], timeout_s: float, log: Log,
                  timeout_error: type[Exception] = UserError) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        statuses = serve.status().applications
        pending = []
        for app in apps:
            status = statuses.get(app)
            state = str(status.status) if status else "MISSING"
            if "DEPLOY_FAILED" in state or "UNHEALTHY" in state:
                messages = [status.message or ""] + [
                    deployment.message or "" for deployment in status.deployments.values()]
                raise UserError(f"Serve application {app} failed: "
                                f"{failure_reason(chr(10).join(messages))} (see the Ray dashboard)")
            if "RUNNING" not in state:
                pending.append(app)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise timeout_error(f"timed out after {timeout_s:.0f} s waiting for "
                                f"{', '.join(pending)} to become healthy")
        time.sleep(1.0)


def _deploy_pools(routes: list[tuple[Route, Any]], config: ServeAppConfig, timeout_s: float,
                  log: Log, timeout_error: type[Exception] = UserError) -> None:
    """Start each (route, model directory) not running yet; wait until all are RUNNING."""
    from ray import serve

    existing = serve.status().applications
    for route, model_dir in routes:
        if route.app in existing and "FAILED" not in str(existing[route.app].status):
            log(f"pool {route.pool} (v{route.version}) already deployed as {route.app}")
            continue
        log(f"starting pool {route.pool} (v{route.version}) as Serve app {route.app}")
        application = build_pool_application(route.deployment.split(":", 1)[1], model_dir,
                                             route.version, route.pool, config.pools[route.pool])
        serve.run_many([serve.RunTarget(application, name=route.app, route_prefix=None)],
                       wait_for_applications_running=False)
    _wait_running([route.app for route, _ in routes], timeout_s, log, timeout_error)


def deploy(config: ServeAppConfig, settings: Settings, log: Log = print,
           timeout_s: float = 600.0) -> dict[str, Any]:
    """Deploy every pool of `config` at the model's current alias, then the ingress."""
    from tandem.serve import routes as route_table

    connect(settings)  # before Ray is imported: it sets up Ray's token auth
    from ray import serve

    name, model_dir, version = resolve_model(config, settings)
    log(f"serving {name} v{version} from {model_dir}")
    students = resolve_students(config, settings)
    table = initial_table(config, name, version, settings, students=students,
                          model_dir=model_dir)
    old = route_table.lookup()
    stale = set()
    if old is not None:
        import ray

        snapshot = ray.get(old.snapshot.remote(0))
        stale = {route["app"] for entry in engine_models(snapshot[1]["models"]).values()
                 for route in entry["pools"].values()}
    wanted = [(route_for(name, version, pool, config.pools[pool]), model_dir)
              for pool in config.teacher_pools()]
    for spec, (student, student_dir, student_version) in zip(config.students, students,
                                                             strict=True):
        log(f"student {student} v{student_version} on {', '.join(spec.pools)}")
        wanted += [(route_for(student, student_version, pool, config.pools[pool]), student_dir)
                   for pool in spec.pools]
    _deploy_pools(wanted, config, timeout_s, log)
    actor = route_table.get_or_create(table)
    import ray

    ray.get(actor.replace.remote(table))
    serve.run_many([serve.RunTarget(build_ingress_application(config, table), name=INGRESS_APP,
                                    route_prefix="/")], wait_for_applications_running=False)
    _wait_running([INGRESS_APP], timeout_s, log)
    for app in stale - {route.app for route, _ in wanted}:
        serve.delete(app)
    adapters = ", ".join(f"{adapter} v{table['models'][adapter]['version']}"
                         for adapter in adapters_on(table["models"], name))
    log(f"serving on {settings.api_url}/v1 (model {name}, version {version}"
        + (f"; adapters {adapters})" if adapters else ")"))
    return table


def current_table(settings: Settings) -> dict[str, Any]:
    import ray

    from tandem.serve import routes as route_table

    connect(settings)
    actor = route_table.lookup()
    if actor is None:
        raise UserError("nothing is deployed; run `tandem deploy` first")
    return ray.get(actor.snapshot.remote(0))[1]


def swap(name: str, version: int, settings: Settings, log: Log = print,
         timeout_s: float | None = None) -> None:
    """Move every pool of model `name` to `version` blue/green (`move_pools`); returns once
    traffic switched. A swap that fails leaves the route table and traffic as they were (a
    canary of another version, stopped before the swap, excepted) and raises: `UserError`
    when nothing serves `name` or `version` cannot serve (its engine fails to start, it does
    not fit the adapters), `SwapFailed` for a timeout or a download that failed."""
    import ray

    from tandem.registry import download_model
    from tandem.serve import routes as route_table

    table = current_table(settings)
    config = ServeAppConfig.model_validate(table["config"])
    timeout_s = timeout_s or config.swap_timeout_s
    entry = table["models"].get(name)
    if entry is None:
        raise UserError(f"model {name!r} is not deployed (served: {', '.join(table['models'])})")
    if "adapter" in entry:
        swap_adapter(name, version, table, settings, log, timeout_s)
        return
    check_swap(name, version, settings, table)
    if any(route["app"] == INGRESS_APP for route in entry["pools"].values()):
        raise UserError(f"{name}'s pools were deployed inside the ingress application "
                        "(`serve deploy`), so they cannot be swapped one by one; deploy with "
                        "`tandem deploy --config ...` to promote and roll back blue/green")

    def model_dir_of(wanted: int) -> Path:
        try:
            return download_model(f"models:/{name}/{wanted}", settings.models_dir / "registry",
                                  settings.mlflow_url)[0]
        except UserError:
            raise
        except Exception as error:  # MLflow raises many types for a store that fails
            raise SwapFailed(f"cannot download models:/{name}/{wanted} "
                             f"({type(error).__name__}: {str(error)[:200]})") from error

    model_dir_of(version)  # before anything changes; cached for the pools
    quality = read_quality(name, version, settings) if "quality" in entry else None
    canary = entry.get("canary")
    if canary is not None and canary["version"] != version:
        stop_canary(name, settings, log)
        canary = None
    moves = [PoolMove(pool, old, route_for(name, version, pool, config.pools[pool]).to_dict())
             for pool, old in entry["pools"].items() if old["version"] != version]

    def serve_ops() -> ServeOps:
        return ServeOps(name, config, model_dir_of, settings, timeout_s, log)

    move_pools(moves, serve_ops(), serve_ops, log)
    actor = route_table.lookup()
    if canary is not None:
        ray.get(actor.set_canary.remote(name, None))  # its apps now serve as the champion's
    if quality is not None:  # a student, or a teacher with students: the router needs it
        ray.get(actor.set_quality.remote(name, quality))
    ray.get(actor.set_version.remote(name, version))


@dataclass(frozen=True)
class PoolMove:
    """One pool of a swap: the route (a `Route` dict) it serves now, and the one it moves to."""

    pool: str
    old: dict[str, Any]
    new: dict[str, Any]


class PoolOps(Protocol):
    """What a swap does to serving, one pool at a time (`ServeOps` on the stack)."""

    def exists(self, app: str) -> bool:
        """Whether application `app` is deployed and has not failed (a canary's, say)."""

    def start(self, route: dict[str, Any]) -> None:
        """Deploy `route`'s application unless it exists; return once it is RUNNING."""

    def switch(self, pool: str, route: dict[str, Any]) -> int:
        """Point `pool` at `route`; return the table's epoch once every ingress replica has it."""

    def retire(self, pool: str, app: str, epoch: int | None) -> None:
        """Drain the requests the ingress still holds on `app` as of `epoch` (None: nothing
        was ever routed to it), then delete it."""


def move_pools(moves: list[PoolMove], ops: PoolOps, put_back_ops: Callable[[], PoolOps],
               log: Log = print) -> None:
    """Move each pool from `old` to `new` blue/green, one at a time: start `new` (reusing an
    application that runs already, a canary's), switch the pool to it, retire `old`.

    When a step fails, what the swap changed is put back, with `put_back_ops()` (a time
    budget of its own): first the pool that failed (switched back if it was switched, its
    new application retired if this swap started it), then the pools already moved, last
    first, the same way in reverse (`old` starts again, the pool switches back, `new` is
    retired). Then the error is raised again; `SwapFailed` when a pool could not be put back.
    """
    moved: list[tuple[PoolMove, bool, bool]] = []  # (move, started `new`, switched to it)
    for move in moves:
        started = switched = False
        try:
            started = not ops.exists(move.new["app"])
            ops.start(move.new)
            switched = True
            epoch = ops.switch(move.pool, move.new)
            log(f"pool {move.pool}: traffic on v{move.new['version']}")
            ops.retire(move.pool, move.old["app"], epoch)
            log(f"pool {move.pool}: v{move.old['version']} removed")
        except BaseException as error:
            log(f"pool {move.pool}: swap to v{move.new['version']} failed "
                f"({type(error).__name__}); putting back what it changed")
            failed = _put_back([(move, started, switched), *reversed(moved)], put_back_ops, log)
            if failed:
                raise SwapFailed(f"{error}; then putting back failed: {'; '.join(failed)}") \
                    from error
            raise
        moved.append((move, started, True))


def _put_back(pools: list[tuple[PoolMove, bool, bool]], make_ops: Callable[[], PoolOps],
              log: Log) -> list[str]:
    """Put each (move, started, switched) back on its `old` route; returns what failed."""
    failed = []
    try:
        ops = make_ops()
    except Exception as error:
        return [f"pools {', '.join(move.pool for move, _, _ in pools)} "
                f"({type(error).__name__}: {str(error)[:300]})"]
    for move, started, switched in pools:
        try:
            epoch = None
            if switched:
                ops.start(move.old)
                epoch = ops.switch(move.pool, move.old)
            if started:
                ops.retire(move.pool, move.new["app"], epoch)
            log(f"pool {move.pool}: back on v{move.old['version']}"
                + (f", {move.new['app']} removed" if started else ""))
        except Exception as error:
            failed.append(f"pool {move.pool} ({type(error).__name__}: {str(error)[:300]}; "
                          f"it may still route to v{move.new['version']})")
    return failed


class ServeOps:
    """`PoolOps` on the stack: one Serve application per (pool, version), and the route
    table actor; every wait ends `timeout_s` after this object was made (`SwapFailed`)."""

    def __init__(self, name: str, config: ServeAppConfig, model_dir_of: Callable[[int], Path],
                 settings: Settings, timeout_s: float, log: Log) -> None:
        from tandem.serve import routes as route_table

        self.name, self.config, self.model_dir_of, self.log = name, config, model_dir_of, log
        self.deadline = time.monotonic() + timeout_s
        self.drain_timeouts = _drain_timeouts(config, settings)
        self.actor = route_table.lookup()

    def _left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def exists(self, app: str) -> bool:
        from ray import serve

        status = serve.status().applications.get(app)
        return status is not None and "FAILED" not in str(status.status)

    def start(self, route: dict[str, Any]) -> None:
        _deploy_pools([(Route(**route), self.model_dir_of(route["version"]))], self.config,
                      self._left(), self.log, timeout_error=SwapFailed)

    def switch(self, pool: str, route: dict[str, Any]) -> int:
        return _wait_applied(self.actor.set_pool.remote(self.name, pool, route), self._left(),
                             f"switch pool {pool}", timeout_error=SwapFailed)

    def retire(self, pool: str, app: str, epoch: int | None) -> None:
        from ray import serve

        if epoch is not None:
            _drain(app, epoch, self.drain_timeouts[pool], pool, self.log)
        serve.delete(app, _blocking=True)


def serve_champion(name: str, version: int, settings: Settings, log: Log = print,
                   timeout_s: float | None = None) -> int | None:
    """Serve `version` of model `name` (`swap`), then make it the `champion`, the old
    champion becoming `previous`; returns the old champion. `tandem promote`, `tandem
    rollback` and the retraining loop's rollout all go this way.

    The aliases move only once the version serves. A swap that fails leaves them, the route
    table and traffic as they were, and its error is raised again saying so: `UserError`
    when the version does not exist or cannot serve, or nothing serves `name`; `SwapFailed`
    for a timeout, or when the version serves but the alias could not be moved.
    """
    from tandem.registry import CHAMPION, alias_version, model_version_exists, promote, with_retries

    url = settings.mlflow_url
    try:
        exists, champion = (model_version_exists(name, version, url),
                            alias_version(name, CHAMPION, url))
    except Exception as error:  # MLflow raises many types for "server unreachable"
        raise SwapFailed(f"cannot read {name} from the registry at {url} "
                         f"({type(error).__name__}: {str(error)[:200]}); nothing changed") from None
    if not exists:
        raise UserError(f"cannot serve {name} v{version}: {name} has no version {version}")
    unchanged = (f"`champion` stays on v{champion}, traffic where it was" if champion is not None
                 else "no alias moved")
    try:
        swap(name, version, settings, log, timeout_s)
    except UserError as error:
        raise UserError(f"cannot serve {name} v{version}: {error}; {unchanged}") from None
    except SwapFailed as error:
        raise SwapFailed(f"cannot serve {name} v{version}: {error}; {unchanged}") from None
    try:
        return with_retries(lambda: promote(name, version, url),
                            f"moving {name}'s `champion` to v{version}", log=log)
    except Exception as error:  # MLflow raises many types for "server unreachable"
        raise SwapFailed(f"{name} v{version} serves, but its `champion` alias could not be "
                         f"moved ({type(error).__name__}: {str(error)[:200]}); run `tandem "
                         f"promote {name} {version}` again to move it") from None


def refresh_quality(name: str, version: int, quality: dict[str, float],
                    settings: Settings) -> bool:
    """Hand the router `quality` (per tier) for `version` of `name`, when that version
    serves it with a quality (a student, or a teacher with students), as the champion or
    as its canary. False: nothing deployed carries it."""
    import ray

    from tandem.serve import routes as route_table

    connect(settings)
    actor = route_table.lookup()
    if actor is None:
        return False
    entry = ray.get(actor.snapshot.remote(0))[1]["models"].get(name) or {}
    canary = entry.get("canary") or {}
    if "quality" in entry and entry["version"] == version:
        ray.get(actor.set_quality.remote(name, quality))
    elif "quality" in canary and canary["version"] == version:
        ray.get(actor.set_canary.remote(name, {**canary, "quality": quality}))
    else:
        return False
    return True


def check_swap(name: str, version: int, settings: Settings,
               table: dict[str, Any] | None = None) -> None:
    """Refuse a swap the engines could not serve, before any alias moves: an adapter
    version trained on another base (AdapterMismatch names both), or a base moving to
    another version under its adapters."""
    if table is None:
        try:
            table = current_table(settings)
        except UserError:
            return  # nothing deployed: `swap` says so
    entry = table["models"].get(name)
    if entry is None:
        return  # not served: `swap` says so
    if "adapter" in entry:
        adapter_target(name, version, table, settings)
        return
    attached = adapters_on(table["models"], name)
    if attached and version != entry["version"]:
        raise UserError(f"adapters {', '.join(attached)} are served on {name} "
                        f"v{entry['version']} and would not fit v{version}: retrain them on "
                        f"models:/{name}/{version}, list them in the Serve config and run "
                        "`tandem deploy`")


def adapter_target(name: str, version: int, table: dict[str, Any],
                   settings: Settings) -> dict[str, Any]:
    """The route-table entry of adapter `name` at `version` on the engines serving it now;
    AdapterMismatch (naming both) when that version was trained on another base."""
    config = ServeAppConfig.model_validate(table["config"])
    base = table["models"][name]["adapter"]["base"]
    base_entry = table["models"][base]
    resolve_adapter(f"models:/{name}/{version}", base, base_entry["version"], settings)
    return adapter_entry(name, version, base, base_entry, config.adapter_pools())


def swap_adapter(name: str, version: int, table: dict[str, Any], settings: Settings,
                 log: Log = print, timeout_s: float = 60.0) -> None:
    """Serve adapter `name` at `version`: the route table changes, the engines stay (they
    load the new version on its first request); returns once every ingress replica has it."""
    from tandem.serve import routes as route_table

    target = adapter_target(name, version, table, settings)
    actor = route_table.lookup()
    try:
        _wait_applied(actor.set_model.remote(name, target), timeout_s, f"switch adapter {name}",
                      timeout_error=SwapFailed)
    except BaseException:
        _wait_applied(actor.set_model.remote(name, table["models"][name]), timeout_s,
                      f"put adapter {name} back", timeout_error=SwapFailed)
        raise
    log(f"adapter {name}: traffic on v{version} (pools {', '.join(target['pools'])}; "
        "no engine restarted)")


def start_canary(name: str, version: int, share: float, settings: Settings,
                 pools: list[str] | None = None, log: Log = print,
                 timeout_s: float | None = None) -> None:
    """Serve `version` of model `name` on `pools` (default: all) beside the champion and send
    it `share` of the model's requests. Running it again with the same version is a no-op."""
    from tandem.registry import download_model
    from tandem.serve import routes as route_table

    table = current_table(settings)
    config = ServeAppConfig.model_validate(table["config"])
    entry = table["models"].get(name)
    if entry is None:
        raise UserError(f"model {name!r} is not deployed (served: {', '.join(table['models'])})")
    unknown = sorted(set(pools or []) - set(entry["pools"]))
    if unknown:
        raise UserError(f"canary pools {unknown} do not serve {name} "
                        f"(its pools: {', '.join(entry['pools'])})")
    if entry["version"] == version:
        raise UserError(f"{name} v{version} is already the version serving; nothing to canary")
    if "adapter" in entry:  # same engines, another adapter version: the table alone changes
        target = adapter_target(name, version, table, settings)
        pools = [pool for pool in pools or target["pools"] if pool in target["pools"]]
        canary = {"version": version, "share": share, "adapter": target["adapter"],
                  "pools": {pool: target["pools"][pool] for pool in pools}}
        _wait_applied(route_table.lookup().set_canary.remote(name, canary), timeout_s or 60.0,
                      "start the canary")
        log(f"canary: {share:.0%} of {name}'s requests on adapter v{version} "
            f"(pools {', '.join(canary['pools'])})")
        return
    model_dir, _ = download_model(f"models:/{name}/{version}", settings.models_dir / "registry",
                                  settings.mlflow_url)
    routes = [route_for(name, version, pool, config.pools[pool])
              for pool in pools or entry["pools"]]
    _deploy_pools([(route, model_dir) for route in routes], config,
                  timeout_s or config.swap_timeout_s, log)
    canary = {"version": version, "share": share,
              "pools": {route.pool: route.to_dict() for route in routes}}
    if "quality" in entry:  # a student, or a teacher with students: judged on its own
        canary["quality"] = read_quality(name, version, settings)
    _wait_applied(route_table.lookup().set_canary.remote(name, canary), timeout_s or 60.0,
                  "start the canary")
    log(f"canary: {share:.0%} of {name}'s requests on v{version} "
        f"(pools {', '.join(canary['pools'])})")


def stop_canary(name: str, settings: Settings, log: Log = print) -> None:
    """End `name`'s canary without promoting it: traffic back on the champion, apps removed."""
    from ray import serve

    from tandem.serve import routes as route_table

    table = current_table(settings)
    canary = table["models"].get(name, {}).get("canary")
    if canary is None:
        log(f"no canary of {name} is running")
        return
    config = ServeAppConfig.model_validate(table["config"])
    epoch = _wait_applied(route_table.lookup().set_canary.remote(name, None), 60.0,
                          "end the canary")
    if "adapter" in canary:  # its pools are the base's engines, which keep serving
        log(f"canary of {name} v{canary['version']} ended")
        return
    timeouts = _drain_timeouts(config, settings)
    for pool, route in canary["pools"].items():
        _drain(route["app"], epoch, timeouts[pool], pool, log)
        serve.delete(route["app"], _blocking=True)
    log(f"canary of {name} v{canary['version']} ended; its pools removed")


def _drain_timeouts(config: ServeAppConfig, settings: Settings) -> dict[str, float]:
    """Each pool's drain timeout (`tandem.serve.drain`), from one read of the request log."""
    from tandem.serve.drain import drain_timeout_s, measured_tpot_ms

    measured = measured_tpot_ms(config.telemetry.root or str(settings.home / "telemetry"))
    return {pool: drain_timeout_s(config, pool, measured.get(pool)) for pool in config.pools}


def _drain(app: str, epoch: int, timeout_s: float, pool: str, log: Log) -> None:
    """Wait for the requests the ingress still holds on `app` (a retired version of `pool`),
    as reported after it applied `epoch`, for at most `timeout_s`."""
    import ray

    from tandem.serve import routes as route_table
    from tandem.serve.drain import wait_drained

    actor = route_table.lookup()
    started = time.monotonic()
    drained, left = wait_drained(lambda: ray.get(actor.in_flight.remote(app, epoch)), timeout_s)
    if drained:
        log(f"pool {pool}: {app} drained in {time.monotonic() - started:.1f} s")
    else:
        log(f"pool {pool}: {app} still held {left} request(s) after the {timeout_s:.0f} s drain "
            "timeout; they are cut")


def _wait_applied(epoch_ref, timeout_s: float, what: str,
                  timeout_error: type[Exception] = UserError) -> int:
    """Wait until every ingress replica has applied the table change that returned `epoch_ref`;
    returns that epoch."""
    import ray

    from tandem.serve import routes as route_table

    epoch = ray.get(epoch_ref)
    deadline = time.monotonic() + timeout_s
    actor = route_table.lookup()
    while not ray.get(actor.acked.remote(epoch)):
        if time.monotonic() > deadline:
            raise timeout_error(f"timed out waiting for the ingress to {what}")
        time.sleep(0.2)
    return epoch


def shutdown(settings: Settings, log: Log = print) -> None:
    """Delete the ingress and every pool application, the route table and the shared view."""
    import ray
    from ray import serve

    from tandem.serve import routes as route_table
    from tandem.serve import shared_view

    connect(settings)
    actor = route_table.lookup()
    apps = [INGRESS_APP]
    if actor is not None:
        table = ray.get(actor.snapshot.remote(0))[1]
        apps += [route["app"] for entry in table["models"].values()
                 for routes in (entry["pools"], entry.get("canary", {}).get("pools", {}))
                 for route in routes.values()]
    for app in dict.fromkeys(apps):  # composed pools live in the ingress application
        serve.delete(app, _blocking=True)
        log(f"deleted Serve app {app}")
    for named in (actor, shared_view.lookup()):
        if named is not None:
            ray.kill(named)

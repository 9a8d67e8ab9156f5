"""The ingress's side of routing: live pool states in, a decision out, observations back.

`tandem.routing` holds the pure policies; this module feeds them what one ingress
replica knows: requests in flight per pool (those beyond the engines' batch limit count
as queued; the other ingress replicas' are added from the shared view,
`tandem.serve.shared_view`, at most one sync old), pools that failed a request (skipped
until a health probe answers), idle pools not observed lately (the ingress sends them a
one-token probe), what each tier spends per hour (the other replicas' spend added the
same way), and after each request the TTFT and TPOT it measured, so the latency model
corrects its prior. Every decision goes to a `DecisionLog` and, in batches, to
`$TANDEM_HOME/routing/decisions.jsonl` for `tandem route explain`.

A pool's batch slots here (`tandem.perf.batch_slots`) are its engines' `max_num_seqs`,
the KV cache left out: the router keeps the requests in flight as a count and a sum of
their max_tokens, an upper bound on what they generate, while the engine admits on the KV
cache its sequences hold so far, not on prompt + max_tokens reserved up front. A KV count
from those sums would call queued (and, past `max_queued_per_replica`, refuse) requests
the engine runs. The KV limit enters where a size is known: `tandem.perf.join_pool` counts
the routed request's slots with its own size standing in for its batch mates'.

What the engines know of their batch (`tandem.serve.engine_load`: running, waiting, KV use,
step time) goes into each pool's state while their report is under a second old, beside
the router's own counts, which stay what a request queues behind: they are current, and
they hold the requests on their way into the engine, which the engine does not count yet
and which wait ahead of a new request all the same (measured on the local pools under the
mixed load: the engines' counts brought forward by the requests sent and answered since
their report predicted TTFT worse than these counts).
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tandem.perf import ReplicaModel, batch_slots, flat_prior, pool_constants, request_cost_usd
from tandem.routing import PoolState, RequestFeatures
from tandem.routing.cost_policy import LatencyCostPolicy
from tandem.routing.log import DecisionLog, decision_record
from tandem.routing.models import ServedModel, pick_model_pool
from tandem.routing.policy import LeastLoadedPolicy, RoundRobinPolicy
from tandem.routing.types import Decision
from tandem.serve.config import PoolConfig, ServeAppConfig
from tandem.serve.engine_load import MAX_AGE_S, EngineKey, EngineLoad, deployment_loads

SPEND_WINDOW_S = 60.0
MAX_DECISIONS_FILE_BYTES = 20 * 1024 * 1024


def pool_prior(pool: PoolConfig, model_profile: str | None) -> ReplicaModel:
    """The latency model a pool starts from: its configured prior, or the catalog roofline."""
    if pool.prior is not None:
        return flat_prior(pool.prior.ttft_ms, pool.prior.tpot_ms, pool.price_per_hour,
                          name=pool.gpu, reference_prompt_tokens=32,
                          max_num_seqs=pool.engine.max_num_seqs,
                          context_length=pool.engine.max_model_len, overhead_ms=pool.overhead_ms)
    from tandem.catalog import load_catalog
    from tandem.perf import build_replica_model

    catalog = load_catalog()
    model = catalog.model(model_profile)
    precision = pool.engine.quantization or ("fp16" if pool.engine.dtype == "float16" else "bf16")
    prior = build_replica_model(catalog, pool.gpu, model, precision,
                                tp=pool.engine.tensor_parallel_size,
                                request_overhead_ms=pool.overhead_ms)
    return replace(prior, price_per_hour=pool.price_per_hour, max_num_seqs=pool.engine.max_num_seqs,
                   context_length=min(model.context_length, pool.engine.max_model_len))


def pool_priors(config: ServeAppConfig) -> dict[str, ReplicaModel]:
    """The performance model of every pool that has one (a `prior`, or a GPU pool with the
    config's `model_profile`); the tandem policy requires one for every pool."""
    return {name: pool_prior(pool, config.model_profile) for name, pool in config.pools.items()
            if pool.prior is not None or (not pool.is_cpu and config.model_profile)}


def build_policy(config: ServeAppConfig, priors: Mapping[str, ReplicaModel] | None = None):
    if config.routing_policy == "round-robin":
        return RoundRobinPolicy()
    if config.routing_policy == "least-loaded":
        return LeastLoadedPolicy()
    return LatencyCostPolicy(dict(pool_priors(config) if priors is None else priors),
                             config.routing_config())


class PoolRouter:
    """Per-ingress-replica routing state around one policy."""

    def __init__(self, config: ServeAppConfig, decisions_path: Path | None) -> None:
        self.config = config
        self.routing = config.routing_config()
        self.priors = pool_priors(config)
        self._pool_constants = {name: pool_constants(prior) for name, prior in self.priors.items()}
        # per replica, sizes not known: the engine's `max_num_seqs` (module docstring)
        self._batch_slots = {name: batch_slots(tokens_per_seq=0, kv_capacity=0,
                                               max_num_seqs=pool.engine.max_num_seqs)
                             for name, pool in config.pools.items()}
        self.policy = build_policy(config, self.priors)
        self.log = DecisionLog()
        self.in_flight: Counter[str] = Counter()
        self.owed_output_tokens: Counter[str] = Counter()  # max_tokens of those in flight
        self.in_flight_apps: Counter[str] = Counter()  # per Serve application: what a drain waits on
        self.down: set[str] = set()
        self.running: dict[str, int] = {}  # pool -> RUNNING replicas, as Serve last reported
        self.others: dict[str, dict[str, float]] = {}  # the other ingress replicas' load_report
        self._waking: dict[str, float] = {}  # cold pool -> when its first request was sent
        self._cold_start_s: dict[str, float] = {}  # pool -> its last measured cold start
        self._spent: dict[str, deque[tuple[float, float]]] = {}
        # (application, deployment) -> its engines' last reports, merged per replica
        self.engines: dict[tuple[str, str], EngineLoad] = {}
        self._decisions_path = decisions_path
        self._unwritten: list[dict[str, Any]] = []
        # pool -> streamed requests sent and not yet answered a first token, oldest first:
        # request id -> (when sent, the pool's state then, the request)
        self._unanswered: dict[str, dict[str, tuple[float, PoolState, RequestFeatures]]] = {}

    def default_tier(self) -> str:
        return self.routing.default_tier

    def states(self, routes: Mapping[str, Mapping[str, Any]], exclude: str | None = None,
               now: float | None = None) -> list[PoolState]:
        """What the policy sees of each pool at `now` (default: the clock); `exclude` is a
        pool that just failed. A pool that may scale to zero (its route has a `cold_start_s`)
        and that Serve reports with no RUNNING replica is cold: one replica to come, every
        request sent to it queued, and the rest of its expected cold start ahead."""
        now = time.time() if now is None else now
        down = set(self.down)
        if exclude:
            down.add(exclude)
        if down >= set(routes):  # nothing known healthy: try them all rather than refuse
            down = {exclude} if exclude and len(routes) > 1 else set()
        states = []
        others_in_flight = self.others.get("in_flight", {})
        others_owed = self.others.get("owed_output_tokens", {})
        engines = self.engines
        for name, route in routes.items():
            in_flight = self.in_flight[name] + int(others_in_flight.get(name, 0))
            cold_ms = self._cold_wait_ms(name, route, now)
            replicas = 1 if cold_ms else (self.running.get(name) or route["replicas"])
            slots = 0 if cold_ms else self._batch_slots.get(name, 1 << 30) * replicas
            engine = engines.get((route["app"], route["deployment"])) if engines else None
            running = waiting = kv = step_ms = None
            if engine is not None and not cold_ms and now - engine.at <= MAX_AGE_S:
                running, waiting = engine.running * replicas, engine.waiting * replicas
                kv, step_ms = engine.kv_cache_usage, engine.step_s * 1e3
            states.append(PoolState(
                name=name, gpu=route["gpu"], healthy=name not in down, replicas=replicas,
                in_flight=min(in_flight, slots), queued=max(0, in_flight - slots),
                price_per_hour=route["price_per_hour"],
                owed_output_tokens=self.owed_output_tokens[name] + int(others_owed.get(name, 0)),
                cold_start_ms=cold_ms, engine_running=running, engine_waiting=waiting,
                kv_cache_usage=kv, engine_step_ms=step_ms))
        return states

    def engines_reported(self, reports: Sequence[tuple[EngineKey, EngineLoad]],
                         now: float) -> None:
        """Every engine's last report, from the shared view (`tandem.serve.shared_view`)."""
        self.engines = deployment_loads(reports, now)

    def engine_reports(self, now: float) -> list[dict[str, Any]]:
        """What the engines last reported, per deployment and per replica, and how old it is
        at `now` (used while under `MAX_AGE_S`): for `/admin/routes`."""
        return [{"app": app, "deployment": deployment, "running": load.running,
                 "waiting": load.waiting, "kv_cache_usage": load.kv_cache_usage,
                 "step_ms": load.step_s * 1e3, "age_s": now - load.at}
                for (app, deployment), load in self.engines.items()]

    def _cold_wait_ms(self, pool: str, route: Mapping[str, Any], now: float) -> float:
        """0 for a warm pool; for a cold one the rest of its expected cold start (the last
        one measured, else the configured one), at least a tenth of it."""
        configured = route.get("cold_start_s")
        if configured is None or self.running.get(pool) != 0:
            return 0.0
        expected = self._cold_start_s.get(pool, configured)
        waited = now - self._waking.get(pool, now)
        return max(expected - waited, 0.1 * expected) * 1e3

    def choose(self, features: RequestFeatures, states: list[PoolState], now: float,
               request_id: str, models: Sequence[ServedModel] = ()) -> Decision:
        """The pool for one request; with `models` (a teacher and its students) the
        cheapest (model, pool) meeting the latency targets and the quality floor, and the
        decision names the model. The decision carries the request's latency targets: the
        tandem policy's, or, from a policy that knows no tiers, the routing config's."""
        if isinstance(self.policy, LatencyCostPolicy):
            self.policy.set_spend_rates(self._spend_rates(now))
            self._tell_waits(now)
        if models:
            decision = pick_model_pool(self.policy, features, self.routing.quality_floor(features),
                                       models, states, now)[1]
        else:
            decision = self.policy.pick_pool(features, states, now)
        if decision.ttft_target_ms is None:
            decision.ttft_target_ms, decision.tpot_target_ms = self.routing.latency_targets(
                features)
        if any(state.cold_start_ms for state in states if state.name == decision.pool):
            self._waking.setdefault(decision.pool, now)  # this request wakes it
        self.log.record(now, features, decision, request_id)
        self._unwritten.append(decision_record(now, features, decision, request_id))
        return decision

    def price(self, decision: Decision, features: RequestFeatures,
              price_per_hour: float) -> float | None:
        """The request's cost, one meaning whatever the policy: the rent of the replica time
        it takes on a full replica of the chosen pool (`tandem.perf.request_cost_usd`, for
        its prompt and `max_tokens`). None for a pool without a performance model."""
        if decision.predicted_cost_usd is not None:
            return decision.predicted_cost_usd
        constants = self._pool_constants.get(decision.pool)
        if constants is None:
            return None
        return request_cost_usd(constants, price_per_hour, features.prompt_tokens,
                                features.max_tokens)

    def dispatched(self, pool: str, features: RequestFeatures, app: str) -> None:
        """A request (or probe) was sent to `pool`'s Serve application `app`: it is in flight
        until `released`."""
        self.in_flight[pool] += 1
        self.owed_output_tokens[pool] += features.max_tokens
        self.in_flight_apps[app] += 1

    def released(self, pool: str, features: RequestFeatures, app: str) -> None:
        self.in_flight[pool] -= 1
        self.owed_output_tokens[pool] -= features.max_tokens
        self.in_flight_apps[app] -= 1
        if self.in_flight_apps[app] <= 0:
            del self.in_flight_apps[app]

    def awaiting_first_token(self, request_id: str, state: PoolState,
                             features: RequestFeatures, now: float) -> None:
        """A streamed request was sent to `state.name` at `now`. Until its first token
        (`first_token`) or its end (`settled`), the longer it waits the more the next
        decisions hear of it: a queue learned from first tokens alone would lag a growing
        one by as long as it makes requests wait."""
        if isinstance(self.policy, LatencyCostPolicy) and not state.cold_start_ms:
            self._unanswered.setdefault(state.name, {})[request_id] = (now, state, features)

    def first_token(self, request_id: str, pool: str, now: float, ttft_ms: float) -> bool:
        """The first token of a request `awaiting_first_token` came after `ttft_ms`: its TTFT
        is learned now, not when it finishes. Returns whether it was learned (`finished`
        then learns only its TPOT)."""
        waiting = self._unanswered.get(pool, {}).pop(request_id, None)
        if waiting is None:
            return False
        _, state, features = waiting
        self.policy.observe(state, features, now, ttft_ms=ttft_ms)
        return True

    def settled(self, request_id: str, pool: str) -> None:
        """A request ended (or went elsewhere) without a first token from `pool`."""
        self._unanswered.get(pool, {}).pop(request_id, None)

    def _tell_waits(self, now: float) -> None:
        """Each pool's oldest request still waiting for its first token, and how long."""
        for waiting in self._unanswered.values():
            if waiting:
                sent, state, features = next(iter(waiting.values()))
                self.policy.observe_waiting(state, features, now, (now - sent) * 1e3)

    def scaled(self, pool: str, running: int, now: float) -> None:
        """Serve reports `running` RUNNING replicas of `pool` at `now`: its load is judged
        per running replica (autoscaling changes the count; 0 leaves the configured count in
        place, or makes a pool that may scale to zero cold). The first replica of a pool
        woken by a request measures its cold start."""
        self.running[pool] = running
        woken = self._waking.pop(pool, None) if running else None
        if woken is not None:
            self._cold_start_s[pool] = now - woken

    def failed(self, pool: str) -> None:
        """A call to `pool` failed: skip it until `recovered` (the ingress probes it)."""
        self.down.add(pool)

    def recovered(self, pool: str) -> None:
        self.down.discard(pool)

    def finished(self, state: PoolState, features: RequestFeatures, now: float, cost_usd: float,
                 output_tokens: int, e2e_ms: float, ttft_ms: float | None,
                 tpot_ms: float | None, ttft_learned: bool = False) -> None:
        """A request answered by `state.name`: learn its latency, count its spend. Without a
        TTFT (a non-streamed response arrives whole) the end-to-end time is what is learned.
        A request sent while the pool was cold, or whose TTFT was learned at its first token
        (`ttft_learned`), teaches only its TPOT: a cold pool's wait for its replica to start
        says nothing about the pool's speed."""
        self.down.discard(state.name)
        if not isinstance(self.policy, LatencyCostPolicy):
            return
        self._spent.setdefault(features.tier, deque()).append((now, cost_usd))
        if output_tokens > 0:
            produced = replace(features, max_tokens=output_tokens)
            if state.cold_start_ms or ttft_learned:
                if tpot_ms is not None:
                    self.policy.observe(state, produced, now, tpot_ms=tpot_ms)
            elif ttft_ms is None:
                self.policy.latency.observe(state, produced, now, e2e_ms=e2e_ms)
            else:
                self.policy.observe(state, produced, now, ttft_ms=ttft_ms, tpot_ms=tpot_ms)

    def pools_to_probe(self, routes: Mapping[str, Mapping[str, Any]],
                       now: float) -> list[PoolState]:
        """Idle healthy pools whose latency was last observed more than `probe_after_s` ago
        (see `LatencyModel.unobserved_for`); the ingress probes them. Not a cold pool: a
        probe would start a replica."""
        after = self.routing.probe_after_s
        if after is None or not isinstance(self.policy, LatencyCostPolicy):
            return []
        latency = self.policy.latency
        return [state for state in self.states(routes, now=now)
                if state.healthy and state.in_flight == 0 and not state.cold_start_ms
                and latency.unobserved_for(state.name, now, after)]

    def residual_samples(self) -> dict[str, list]:
        """What the latency model's residual tables are fitted to (`tandem.routing.residual`),
        copied on the event loop; empty without a latency model."""
        if not isinstance(self.policy, LatencyCostPolicy):
            return {}
        return self.policy.latency.residual_samples()

    def residuals_fitted(self, tables: Mapping[str, tuple[float, ...] | None]) -> None:
        """Tables fitted off the request path from `residual_samples`: the latency model uses
        them from the next decision on."""
        if isinstance(self.policy, LatencyCostPolicy):
            self.policy.latency.set_residuals(tables)

    def probed(self, state: PoolState, features: RequestFeatures, now: float,
               ttft_ms: float) -> None:
        """A probe of `state.name` answered its one token after `ttft_ms`."""
        if isinstance(self.policy, LatencyCostPolicy):
            self.policy.observe(state, features, now, ttft_ms=ttft_ms)

    def load_report(self, now: float) -> dict[str, dict[str, float]]:
        """What this replica adds to the deployment's load, for the shared view."""
        return {"in_flight": {pool: n for pool, n in self.in_flight.items() if n},
                "owed_output_tokens": {pool: n for pool, n in self.owed_output_tokens.items() if n},
                "spend_per_hour": self._own_spend_rates(now)}

    def _own_spend_rates(self, now: float) -> dict[str, float]:
        rates = {}
        for tier, spent in self._spent.items():
            while spent and spent[0][0] < now - SPEND_WINDOW_S:
                spent.popleft()
            rates[tier] = sum(cost for _, cost in spent) * 3600.0 / SPEND_WINDOW_S
        return rates

    def _spend_rates(self, now: float) -> dict[str, float]:
        """Each tier's spend per hour over the deployment: this replica's and the others'."""
        rates = self._own_spend_rates(now)
        for tier, rate in self.others.get("spend_per_hour", {}).items():
            rates[tier] = rates.get(tier, 0.0) + rate
        return rates

    def take_decisions(self) -> list[dict[str, Any]]:
        """The decisions made since the last call (called on the event loop, like `choose`)."""
        batch, self._unwritten = self._unwritten, []
        return batch

    def write_decisions(self, batch: list[dict[str, Any]]) -> None:
        """Append `batch` to the JSON-lines file; the ingress runs this off the request path."""
        if not batch or self._decisions_path is None:
            return
        path = self._decisions_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_DECISIONS_FILE_BYTES:
            path.replace(path.with_suffix(".jsonl.1"))
        with path.open("a", encoding="utf-8") as out:
            out.writelines(json.dumps(record, separators=(",", ":")) + "\n" for record in batch)

"""The simulator checked against the live stack: fit each local pool's performance model
from live runs, replay other live runs' own arrivals through the simulator, compare.

A live run is read from the request log (ingress clock): each request's arrival, prompt
and output tokens, tier, the pool that served it and the TTFT and TPOT measured.

Fitting (`fit_pools`) replays each pool's own requests from the fit runs through the
simulator, so a pool is judged on the batches it really had, and picks the replica
parameters (serving-path overhead, step overhead, the step's fixed and per-KV-token
cost, the cost per token computed) that minimise the log error of TTFT and TPOT (robust
least squares). The local pools share the machine's two cores with the ingress, the
proxy and the clients: a pool runs at `contention` times its pace while another pool has
requests in flight (in the fit, as the other pool's live requests say; in a replay, as
the simulated ones do). It is fitted on a pool measured both alone and beside another
(an all-`fast` run beside a two-pool run); the other pools are fitted with it held.

Comparing (`check_against_live`) replays each run's arrivals through the policy the run
was served with, from its prior as the live router started, and sets the simulated
attainment per tier and TTFT p50/p90 per pool beside the live ones (`compare`). Arrivals
are replayed open-loop at their live timestamps; the live clients were closed-loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from tandem.perf import ReplicaModel
from tandem.planner.simulator import Pace, SimulationResult, Slo, Slowdown, simulate
from tandem.planner.trace import Trace
from tandem.routing.config import RoutingConfig
from tandem.routing.policy import RoutingPolicy
from tandem.routing.types import Decision, RequestFeatures

COLUMNS = ("request_id", "time", "pool", "tier", "prompt_tokens", "completion_tokens",
           "ttft_ms", "tpot_ms", "status")
# the replica parameters fitted, in this order (`ReplicaModel` fields, seconds)
FITTED = ("request_overhead", "overhead", "mem_fixed", "mem_per_token", "flop_per_token")
FLOOR_S = 1e-5  # no fitted time below 10 us: the parameters are searched on a log scale
# where the search starts the cost per token computed: shares of the prior's memory part
COMPUTE_STARTS = (1 / 32, 1 / 8, 1 / 2)
MAX_FITTED_S = 10.0  # no fitted time above 10 s
UNSERVED_LOG_ERROR = 10.0  # a request the replay did not serve: a large, finite error


@dataclass(frozen=True)
class LiveRun:
    """One live run's served requests, in arrival order (seconds from its first)."""

    name: str
    trace: Trace
    tiers: np.ndarray
    pools: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray  # NaN for one-token answers

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Mapping]) -> LiveRun:
        """From request-log rows (`COLUMNS`, `time` a datetime); only streamed requests
        served whole (status 200, TTFT measured) are kept."""
        kept = sorted((row for row in rows if row["status"] == 200 and row["pool"]
                       and row["ttft_ms"] is not None), key=lambda row: row["time"])
        if not kept:
            raise ValueError(f"live run {name!r} has no request served with a TTFT")
        start = kept[0]["time"]
        arrival = np.array([(row["time"] - start).total_seconds() for row in kept])
        return cls(
            name,
            Trace(arrival, np.array([row["prompt_tokens"] for row in kept]),
                  np.array([row["completion_tokens"] for row in kept]), source=name),
            np.array([row["tier"] for row in kept]), np.array([row["pool"] for row in kept]),
            np.array([row["ttft_ms"] for row in kept], dtype=float),
            np.array([math.nan if row["tpot_ms"] is None else row["tpot_ms"] for row in kept]))

    @classmethod
    def from_log(cls, telemetry: Path, request_ids: Iterable[str], name: str,
                 since: datetime | None = None) -> LiveRun:
        """The requests `request_ids` from the request log under `telemetry` (logged at or
        after `since`, when given)."""
        from tandem.telemetry.request_log import read_requests

        wanted = set(request_ids)
        rows = read_requests(telemetry, since, columns=list(COLUMNS)).to_pylist()
        return cls.from_rows(name, [row for row in rows if row["request_id"] in wanted])

    def of_pool(self, pool: str) -> LiveRun:
        mine = self.pools == pool
        return replace(self, trace=self.trace.select(mine), tiers=self.tiers[mine],
                       pools=self.pools[mine], ttft_ms=self.ttft_ms[mine],
                       tpot_ms=self.tpot_ms[mine])

    def busy(self, pool: str) -> list[tuple[float, float]]:
        """When `pool` had requests in flight (merged intervals, seconds)."""
        mine = self.pools == pool
        ends = (self.trace.arrival_s[mine] + self.ttft_ms[mine] / 1e3
                + np.nan_to_num(self.tpot_ms[mine]) / 1e3
                * np.maximum(self.trace.output_tokens[mine] - 1, 0))
        merged: list[tuple[float, float]] = []
        for start, end in sorted(zip(self.trace.arrival_s[mine], ends)):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


@dataclass(frozen=True)
class PoolFit:
    """A pool's fitted model and how well it replays its fit runs."""

    model: ReplicaModel
    contention: float
    requests: int
    ttft_error: float  # median |simulated - measured| / measured over the fit runs
    tpot_error: float
    prior_ttft_error: float  # the same, replayed on the prior the fit started from
    prior_tpot_error: float


class RecordedChoices:
    """Sends each request to the pool the live router chose for it: a replay that keeps
    the live routing and tests only the performance model."""

    def __init__(self, run: LiveRun) -> None:
        self._pools: dict[float, list[str]] = {}
        for at, pool in zip(run.trace.arrival_s.tolist(), run.pools.tolist()):
            self._pools.setdefault(at, []).append(pool)

    def pick_pool(self, request: RequestFeatures, pools, now: float) -> Decision:
        return Decision(pool=self._pools[now].pop(0), reason="recorded")


def _with(prior: ReplicaModel, values: np.ndarray) -> ReplicaModel:
    return replace(prior, **dict(zip(FITTED, values.tolist())))


def _errors(run: LiveRun, result: SimulationResult) -> tuple[np.ndarray, np.ndarray]:
    """Per request, simulated / measured TTFT and TPOT (NaN where not measured)."""
    trace = run.trace
    ttft = (result.first_token_s - trace.arrival_s) * 1e3
    tpot = ((result.finish_s - result.first_token_s)
            / np.maximum(trace.output_tokens - 1, 1) * 1e3)
    return ttft / run.ttft_ms, tpot / run.tpot_ms


class _PoolShare:
    """A pool's own requests in one live run, and when another pool had requests in flight:
    what each replay of a fit needs, read from the run once."""

    def __init__(self, run: LiveRun, pool: str) -> None:
        self.pool = pool
        self.mine = run.of_pool(pool)
        self.others_busy = [interval for other in set(run.pools.tolist()) - {pool}
                            for interval in run.busy(other)]

    def replay(self, model: ReplicaModel, contention: float) -> tuple[np.ndarray, np.ndarray]:
        """Simulated / measured TTFT and TPOT of the requests on `model`, slowed by
        `contention` while another pool was busy live."""
        pace = Pace(slowdowns=[Slowdown(self.pool, start, end, contention)
                               for start, end in self.others_busy])
        result = simulate(self.mine.trace, {self.pool: (model, 1)}, Slo(math.inf, math.inf),
                          pace=pace)
        return _errors(self.mine, result)


def _replay_shares(shares: Sequence[_PoolShare], model: ReplicaModel,
                   contention: float) -> tuple[np.ndarray, np.ndarray]:
    parts = [share.replay(model, contention) for share in shares]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fit_pool(pool: str, prior: ReplicaModel, runs: Sequence[LiveRun],
             contention: float | None = None) -> PoolFit:
    """`pool`'s replica model (one replica) fitted on the requests it served in `runs`,
    starting from `prior`; `contention` is fitted too when None, else held.

    Robust least squares on the log errors (`soft_l1`: a few requests stuck behind a
    hiccup of the machine do not drag the fit). A decode step is the larger of its memory
    and compute parts, so a per-token compute cost below the memory part's has no
    gradient: the search starts from `COMPUTE_STARTS` and keeps the best."""
    shares = [_PoolShare(run, pool) for run in runs if (run.pools == pool).any()]
    if not shares:
        raise ValueError(f"no fit run served a request on pool {pool!r}")
    fitted = len(FITTED) + (contention is None)

    def unpack(x: np.ndarray) -> tuple[ReplicaModel, float]:
        values = np.exp(x)
        return (_with(prior, values[:len(FITTED)]),
                float(values[-1]) if contention is None else contention)

    def replays(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _replay_shares(shares, *unpack(x))

    timed = np.concatenate([~np.isnan(share.mine.tpot_ms) for share in shares])

    def residuals(x: np.ndarray) -> np.ndarray:
        """One per measured TTFT and TPOT, always as many (a request the replay left
        unserved counts `UNSERVED_LOG_ERROR`)."""
        ttft, tpot = replays(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.concatenate([ttft, tpot[timed]]))
        return np.where(np.isfinite(logs), logs, UNSERVED_LOG_ERROR)

    start = np.log([max(getattr(prior, name), FLOOR_S) for name in FITTED]
                   + ([0.8] if contention is None else []))
    upper = np.full(fitted, np.log(MAX_FITTED_S))
    if contention is None:
        upper[-1] = 0.0  # a pool is not faster beside another
    searches = []
    for share in COMPUTE_STARTS:
        x = start.copy()
        x[FITTED.index("flop_per_token")] = np.log(prior.mem_fixed * share)
        searches.append(least_squares(residuals, np.minimum(x, upper - 1e-3),
                                      bounds=(np.full(fitted, np.log(FLOOR_S)), upper),
                                      diff_step=0.02, loss="soft_l1", f_scale=0.1,
                                      max_nfev=60 * fitted))
    best = min(searches, key=lambda search: search.cost)
    model, pace = unpack(best.x)
    ttft, tpot = replays(best.x)
    prior_ttft, prior_tpot = _replay_shares(shares, prior, 1.0)
    return PoolFit(model, pace, len(ttft), _median_error(ttft), _median_error(tpot),
                   _median_error(prior_ttft), _median_error(prior_tpot))


def _median_error(ratios: np.ndarray) -> float:
    """Median |simulated / measured - 1| over the requests measured (NaN: not measured)."""
    return float(np.nanmedian(abs(ratios - 1)))


def fit_pools(priors: Mapping[str, ReplicaModel], runs: Sequence[LiveRun],
              contention: bool = True) -> dict[str, PoolFit]:
    """Each pool's fit. Contention is fitted on a pool measured both alone and beside
    another pool in `runs`; the other pools are fitted with the mean of those held (1 when
    no pool was measured both ways, or `contention` is False)."""
    def measured_both(pool: str) -> bool:
        served = [set(run.pools.tolist()) for run in runs]
        return (any(pools == {pool} for pools in served)
                and any(pool in pools and len(pools) > 1 for pools in served))

    fits = {pool: fit_pool(pool, prior, runs) for pool, prior in priors.items()
            if contention and measured_both(pool)}
    held = float(np.mean([fit.contention for fit in fits.values()])) if fits else 1.0
    return {pool: fits.get(pool) or fit_pool(pool, prior, runs, held)
            for pool, prior in priors.items()}


def replay(run: LiveRun, fits: Mapping[str, PoolFit], policy: RoutingPolicy | None,
           routing: RoutingConfig) -> SimulationResult:
    """`run`'s arrivals through the simulated pools of `fits` (those deployed in the run),
    routed by `policy` as it starts (None: each request to the pool it went to live)."""
    requests = [RequestFeatures(prompt_tokens=int(prompt), max_tokens=int(output), tier=tier)
                for prompt, output, tier in zip(run.trace.prompt_tokens.tolist(),
                                                run.trace.output_tokens.tolist(),
                                                run.tiers.tolist())]
    contention = min(fit.contention for fit in fits.values())
    return simulate(run.trace, {name: (fit.model, 1) for name, fit in fits.items()},
                    Slo(math.inf, math.inf), policy=policy or RecordedChoices(run),
                    requests=requests, pace=Pace(contention=contention))


def check_against_live(priors: Mapping[str, ReplicaModel],
                       runs: Mapping[str, Sequence[LiveRun]],
                       deployed: Mapping[str, Sequence[str]],
                       policies: Mapping[str, Callable[[], RoutingPolicy]],
                       routing: RoutingConfig, held_out: str = "tandem",
                       contention: bool = True) -> tuple[dict[str, PoolFit], list[Comparison]]:
    """Fit the pools on every variant's runs but `held_out`'s, then replay every run.

    Args:
        priors: each pool's model as the live router starts from it.
        runs: variant (a deployment: `tandem`, `all-fast`, ...) -> its live runs.
        deployed: variant -> the pools it deployed.
        policies: variant -> a fresh policy as that deployment's router started.
        routing: the tier targets both sides are judged against.
    """
    fit_runs = [run for name, group in runs.items() if name != held_out for run in group]
    fits = fit_pools(priors, fit_runs, contention=contention)
    comparisons = [
        compare(run, replay(run, {pool: fits[pool] for pool in deployed[name]},
                            policies[name](), routing), routing)
        for name, group in runs.items() for run in group]
    return fits, comparisons


@dataclass(frozen=True)
class Comparison:
    """A live run beside its replay: attainment per tier, TTFT p50/p90 (ms) per pool."""

    run: str
    attainment: dict[str, tuple[float, float]]  # tier -> (live, simulated)
    ttft: dict[str, tuple[tuple[float, float], tuple[float, float]]]  # pool -> live, simulated
    requests: dict[str, tuple[int, int]]  # pool -> (live, simulated)

    def misses(self, points: float = 0.05, ratio: float = 0.20) -> list[str]:
        """What departs from the live run by more than `points` of attainment or `ratio` of
        a TTFT percentile."""
        out = [f"{tier} attainment {sim:.1%} vs {live:.1%}"
               for tier, (live, sim) in self.attainment.items() if abs(sim - live) > points]
        for pool, (live, sim) in self.ttft.items():
            out += [f"{pool} TTFT {name} {s:.0f} vs {m:.0f} ms"
                    for name, m, s in zip(("p50", "p90"), live, sim)
                    if not math.isnan(m) and abs(s - m) > ratio * m]
        return out


def tally(comparisons: Sequence[Comparison], points: float = 0.05,
          ratio: float = 0.20) -> str:
    """How many (run, tier) attainments and (run, pool) TTFT percentiles are within the
    targets."""
    tiers = [abs(sim - live) <= points for c in comparisons
             for live, sim in c.attainment.values()]
    percentiles = [abs(s - m) <= ratio * m for c in comparisons
                   for live, sim in c.ttft.values() for m, s in zip(live, sim)
                   if not math.isnan(m)]
    return (f"within {points * 100:.0f} points: {sum(tiers)} of {len(tiers)} tier attainments; "
            f"within {ratio:.0%}: {sum(percentiles)} of {len(percentiles)} pool TTFT p50/p90")


def compare(run: LiveRun, result: SimulationResult, routing: RoutingConfig) -> Comparison:
    """Both sides judged alike: the ingress clock's TTFT and TPOT against the tier targets."""
    trace = run.trace
    sim_ttft = (result.first_token_s - trace.arrival_s) * 1e3
    sim_tpot = ((result.finish_s - result.first_token_s)
                / np.maximum(trace.output_tokens - 1, 1) * 1e3)
    attainment = {}
    for tier in sorted(set(run.tiers.tolist())):
        mine = run.tiers == tier
        target = routing.targets(tier)
        attainment[tier] = tuple(
            float(np.mean((ttft[mine] <= target.ttft_ms)
                          & ((tpot[mine] <= target.tpot_ms) | np.isnan(tpot[mine]))))
            for ttft, tpot in ((run.ttft_ms, run.tpot_ms), (sim_ttft, sim_tpot)))
    names = [pool.name for pool in result.pools]
    sim_pools = np.array([names[p] if p >= 0 else "" for p in result.pool_of_request])
    ttft, counts = {}, {}
    for pool in sorted(set(run.pools.tolist()) | set(names)):
        sides = [run.ttft_ms[run.pools == pool], sim_ttft[sim_pools == pool]]
        ttft[pool] = tuple(tuple(np.percentile(side, [50, 90]).tolist()) if side.size
                           else (math.nan, math.nan) for side in sides)
        counts[pool] = (int(sides[0].size), int(sides[1].size))
    return Comparison(run.name, attainment, ttft, counts)


def format_comparisons(comparisons: Sequence[Comparison], header: str) -> str:
    """The comparison table: one line per run and tier, then per run and pool."""
    lines = [header, f"{'run':<16} {'tier':<12} {'live':>7} {'sim':>7} {'diff':>7}"]
    for c in comparisons:
        lines += [f"{c.run:<16} {tier:<12} {live:>7.1%} {sim:>7.1%} {100 * (sim - live):>+6.1f}p"
                  for tier, (live, sim) in c.attainment.items()]
    lines.append(f"{'run':<16} {'pool':<6} {'live n':>6} {'sim n':>6} {'live p50':>9} "
                 f"{'sim p50':>8} {'live p90':>9} {'sim p90':>8}  (TTFT ms, ingress clock)")
    for c in comparisons:
        for pool, ((m50, m90), (s50, s90)) in c.ttft.items():
            live_n, sim_n = c.requests[pool]
            lines.append(f"{c.run:<16} {pool:<6} {live_n:>6} {sim_n:>6} {m50:>9.0f} {s50:>8.0f} "
                         f"{m90:>9.0f} {s90:>8.0f}")
    return "\n".join(lines)


def format_fits(fits: Mapping[str, PoolFit]) -> str:
    """The fitted replica parameters (ms) and how well they replay their own fit runs."""
    lines = [f"{'pool':<6} {'requests':>8} {'req ovh':>8} {'step ovh':>8} {'fixed':>7} "
             f"{'per KV tok':>10} {'per tok':>8} {'contention':>10} {'|err| TTFT':>10} "
             f"{'|err| TPOT':>10}  (prior's |err| TTFT / TPOT)"]
    for pool, fit in fits.items():
        m = fit.model
        lines.append(f"{pool:<6} {fit.requests:>8} {m.request_overhead * 1e3:>8.1f} "
                     f"{m.overhead * 1e3:>8.2f} {m.mem_fixed * 1e3:>7.2f} "
                     f"{m.mem_per_token * 1e3:>10.5f} {m.flop_per_token * 1e3:>8.3f} "
                     f"{fit.contention:>10.2f} {fit.ttft_error:>10.1%} {fit.tpot_error:>10.1%}"
                     f"  ({fit.prior_ttft_error:.1%} / {fit.prior_tpot_error:.1%})")
    return "\n".join(lines)

"""Autoscaling the router can see, on the real stack (`make test-slow`: engine starts on
2 cores take minutes). `cheap` is redeployed to scale between 0 and 2 replicas:

1. scaled to zero it is cold, not down: requests whose targets cannot wait for its start
   spill to `fast`, a request that can wait wakes it, and once it runs it is routed to,
   with no failed request in between;
2. under a load that fills it, Serve starts its second replica and `cheap`'s share of the
   load follows its running replicas (both replicas share one core here, so it is the
   router's view of the replicas being tested, not a doubled speed).

The stack's usual two pools are deployed again afterwards."""

from __future__ import annotations

import json
import threading
import time

import pytest
from tandem.routing.config import RoutingConfig
from tandem.serve.loadgen import Stream, run_load, summarize

from .conftest import LOAD_KEY, MODEL, decisions, served_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALING = {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 2,
           "cold_start_s": 120.0}


class ReplicaTimeline:
    """`cheap`'s RUNNING replicas as Serve reports them, sampled every second."""

    def __init__(self, deployment_prefix: str = "cheap-v") -> None:
        self.samples: list[tuple[float, int]] = []
        self._prefix = deployment_prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplicaTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from ray import serve

        while not self._stop.is_set():
            running = 0
            for app in serve.status().applications.values():
                for name, deployment in app.deployments.items():
                    if name.startswith(self._prefix):
                        running += sum(count for state, count in deployment.replica_states.items()
                                       if getattr(state, "value", state) == "RUNNING")
            self.samples.append((time.time(), running))
            self._stop.wait(1.0)

    def at(self, when: float) -> int | None:
        """Replicas running at `when`: None unless the samples around it agree."""
        before = [count for sampled, count in self.samples if sampled <= when]
        after = [count for sampled, count in self.samples if sampled > when]
        if before and after and before[-1] == after[0]:
            return before[-1]
        return None

    def first(self, count: int) -> float | None:
        return next((sampled for sampled, seen in self.samples if seen == count), None)


@pytest.fixture(scope="module")
def autoscaled(served):
    from tandem.serve.deploy import deploy

    deploy(served_config(cheap={"autoscaling": SCALING}), served)
    try:
        yield served
    finally:
        deploy(served_config(), served)


def test_a_cold_pool_spills_what_cannot_wait_and_serves_once_woken(autoscaled):
    routing = RoutingConfig.local_cpu_defaults()
    patient = {"x-tandem-ttft-ms": "600000"}  # a caller that can wait for the cold start
    with ReplicaTimeline() as timeline:
        time.sleep(3)
        assert timeline.samples[-1][1] == 0, timeline.samples  # min_replicas 0: nothing runs
        results = []
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            results += run_load(autoscaled.api_url, [
                Stream("interactive", 16, 1), Stream("batch", 32, 1),
                Stream("batch", 16, 1, headers=patient)], duration_s=30, model=MODEL,
                api_key=LOAD_KEY["key"])
            woke = timeline.first(1)
            if woke is not None and any(r.pool == "cheap" and r.started_at > woke + 5
                                        for r in results if not r.error):
                break
    print(json.dumps(summarize(results, routing), indent=1))
    print("cheap running replicas:", timeline.samples[0], "->", timeline.first(1))
    assert [(r.status, r.error) for r in results if r.status != 200] == []  # no 5xx, nothing cut
    woke = timeline.first(1)
    assert woke is not None, "cheap never started"
    records = decisions(autoscaled)
    waited = [r for r in results if r.pool == "cheap" and r.started_at < woke - 2]
    assert waited, "no request waited for cheap's cold start"
    print(f"{len(waited)} requests waited for cheap's start, TTFT "
          f"{max(r.ttft_ms for r in waited) / 1e3:.0f} s at most; while cold "
          f"{sum(r.pool == 'fast' for r in results if r.started_at < woke)} went to fast")
    assert all("cheap is cold: waits" in records[r.request_id]["reason"] for r in waited
               if r.request_id in records)
    cold_batch = [records[r.request_id] for r in results if r.tier == "batch"
                  and r.started_at < woke - 5 and r.pool == "fast" and r.request_id in records]
    assert cold_batch and all("spilled from cold cheap" in record["reason"]
                              or "cold cheap passed over" in record["reason"]
                              for record in cold_batch), cold_batch[:3]
    assert any("spilled from cold cheap" in record["reason"] for record in cold_batch)
    warm = [r for r in results if r.started_at > woke + 5 and r.tier == "batch"]
    assert any(r.pool == "cheap" for r in warm), "cheap was not routed to after its start"


def test_a_pool_that_scales_up_takes_a_share_that_follows_its_running_replicas(autoscaled, http):
    """Standard-tier load that fills one `cheap` replica: the router sends the overflow to
    `fast`; once Serve runs a second `cheap` replica, `cheap` takes more of it. The two
    windows compared: 10-35 s into the load (one replica; Serve waits 30 s before it scales
    up), and 30 s starting 15 s after the second replica runs (its start is over)."""
    load = [Stream("standard", 32, 12)]
    with ReplicaTimeline() as timeline:
        time.sleep(2)
        if timeline.samples[-1][1] == 0:  # run alone: wake cheap first
            reply = http.post(f"{autoscaled.api_url}/v1/completions", timeout=600,
                              headers={"x-tandem-ttft-ms": "600000"},
                              json={"model": MODEL, "prompt": "translate: red cat =>",
                                    "max_tokens": 4})
            assert reply.status_code == 200 and reply.headers["x-tandem-pool"] == "cheap"
        assert timeline.samples[-1][1] == 1, timeline.samples[-3:]
        started, results = time.time(), []
        while time.time() < started + 480:
            results += run_load(autoscaled.api_url, load, duration_s=20, model=MODEL,
                                api_key=LOAD_KEY["key"])
            two = timeline.first(2)
            if two is not None and time.time() > two + 15:
                break
        assert timeline.first(2) is not None, f"Serve never ran a second replica: {timeline.samples[-5:]}"
        scaled = run_load(autoscaled.api_url, load, duration_s=30, model=MODEL,
                          api_key=LOAD_KEY["key"])
    assert [(r.status, r.error) for r in results + scaled if r.status != 200] == []
    windows = {1: [r for r in results if started + 10 <= r.started_at <= started + 35
                   and timeline.at(r.started_at) == 1],
               2: [r for r in scaled if timeline.at(r.started_at) == 2]}
    share = {replicas: (sum(r.pool == "cheap" for r in window) / max(1, len(window)), len(window))
             for replicas, window in windows.items()}
    print(f"cheap's second replica ran {timeline.first(2) - started:.0f} s into the load; "
          "cheap's share of standard requests (share, requests) by its running replicas:", share)
    assert share[1][1] >= 30 and share[2][1] >= 30, share
    assert share[2][0] > share[1][0] + 0.1, share

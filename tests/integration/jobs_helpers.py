"""Waiting on Ray jobs from tests."""

from __future__ import annotations

import time

from tandem.ray_jobs import TERMINAL


def wait_for_job(client, job_id: str, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(2)
    client.stop_job(job_id)
    raise TimeoutError(f"job {job_id} still running after {timeout_s} s")

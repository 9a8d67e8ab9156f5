"""Submit and follow Ray jobs on the stack's cluster (the Jobs API over HTTP); the job
entrypoints themselves are the top-level `jobs/`."""

from __future__ import annotations

import os
import uuid

from tandem.errors import UserError
from tandem.registry import git_commit
from tandem.settings import Settings, ray_cluster_env

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def job_client(settings: Settings):
    os.environ.update(ray_cluster_env(settings))
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(settings.dashboard_url)
    except Exception as error:
        raise UserError(f"no Ray cluster at {settings.dashboard_url} ({type(error).__name__}); "
                        "start one with `tandem up`") from None


def submit_job(
    settings: Settings, entrypoint: list[str], working_dir: str | None = ".",
    extra_env: dict[str, str] | None = None, submission_id: str | None = None,
) -> str:
    """Submit `entrypoint` with the stack's settings in its environment; `working_dir` is
    uploaded with it (None: the entrypoint is an installed command)."""
    import shlex

    env = {**settings.service_env(), "TANDEM_GIT_COMMIT": git_commit(), **(extra_env or {})}
    return job_client(settings).submit_job(
        entrypoint=shlex.join(entrypoint),
        submission_id=submission_id or f"tandem-{uuid.uuid4().hex[:8]}",
        runtime_env={"env_vars": env, **({"working_dir": working_dir} if working_dir else {})},
    )


def job_status(settings: Settings, job_id: str) -> str | None:
    """A job's status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); None when Ray does
    not know the job or does not answer."""
    try:
        return str(job_client(settings).get_job_status(job_id).value)
    except Exception:  # unknown id, or the Jobs API briefly away: ask again next time
        return None


def tail_job(settings: Settings, job_id: str) -> str:
    """Stream the job's logs until it ends; return its final status."""
    import asyncio

    client = job_client(settings)

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(stream())
    return str(client.get_job_status(job_id).value)

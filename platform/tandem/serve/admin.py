"""Admin actions over HTTP (`/admin/*`, admin key only): promote and roll back.

A swap takes minutes and drives Ray Serve itself, so the ingress does not run it: it
checks the request against the registry (so a typo is a 404 now, not a failed job
later) and submits `tandem promote` / `tandem rollback` as a Ray job, answering 202
with the job id (`ray job logs ID` or the Ray dashboard follow it).
"""

from __future__ import annotations

from typing import Any

from tandem.serve.validation import RequestError


def parse_target(body: Any, needs_version: bool) -> tuple[str, int | None]:
    """(model, version) of an admin request body; 400 naming the bad field."""
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    allowed = {"model", "version"} if needs_version else {"model"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}", unknown[0], "unknown_field")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "'model' must be a registered model name", "model")
    if not needs_version:
        return model, None
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RequestError(400, "'version' must be a positive integer", "version")
    return model, version


def check_target(model: str, version: int | None, mlflow_url: str) -> int:
    """The version the action will serve: `version` if registered, else `previous`."""
    from mlflow.exceptions import MlflowException

    from tandem.registry import PREVIOUS, alias_version, model_version_exists

    try:
        if version is not None:
            if not model_version_exists(model, version, mlflow_url):
                raise RequestError(404, f"{model} has no version {version}", "version",
                                   "version_not_found")
            return version
        previous = alias_version(model, PREVIOUS, mlflow_url)
    except MlflowException as error:
        raise RequestError(503, f"the model registry did not answer ({error.message[:200]})",
                           code="registry_unavailable") from None
    if previous is None:
        raise RequestError(409, f"{model} has no `previous` version to roll back to", "model",
                           "no_previous_version")
    return previous


def check_fits(models: dict[str, Any], model: str, version: int, mlflow_url: str) -> None:
    """400, naming both, when `version` of adapter `model` was trained on another base than
    the engines serve, or when a base model with adapters would move to another version."""
    from tandem.registry import ADAPTER_BASE_TAG, version_tags
    from tandem.serve.adapters import AdapterMismatch, adapters_on, check_base

    entry = models[model]
    adapter = entry.get("adapter")
    if adapter is None:
        attached = adapters_on(models, model)
        if attached and version != entry["version"]:
            raise RequestError(400, f"adapters {', '.join(attached)} are served on {model} "
                               f"v{entry['version']} and would not fit v{version}", "version",
                               "adapter_base_mismatch")
        return
    from mlflow.exceptions import MlflowException

    try:
        tags = version_tags(model, version, mlflow_url)
    except MlflowException as error:
        raise RequestError(503, f"the model registry did not answer ({error.message[:200]})",
                           code="registry_unavailable") from None
    try:
        check_base(model, version, tags.get(ADAPTER_BASE_TAG), adapter["base"],
                   adapter["base_version"])
    except AdapterMismatch as error:
        raise RequestError(400, str(error), "version", "adapter_base_mismatch") from None


def submit(arguments: list[str]) -> str:
    """Run `tandem ARGUMENTS` as a Ray job on this stack; returns the job id."""
    from tandem.ray_jobs import submit_job
    from tandem.settings import load_settings

    return submit_job(load_settings(), ["tandem", *arguments], working_dir=None)

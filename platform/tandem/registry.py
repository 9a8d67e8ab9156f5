"""MLflow model registry: register checkpoints with lineage, move aliases,
and resolve `models:/NAME@ALIAS` to a local directory vLLM can load.

One registered model per served model; aliases `champion` (serving),
`challenger` (candidate), `previous` (last champion). A LoRA adapter registered
unmerged is its own registered model too: its versions hold the adapter alone and
the tag `tandem.adapter_base = models:/BASE/VERSION` names the base it needs.
Downloads are cached by version under `$TANDEM_HOME/models/registry/NAME/VERSION`,
so a running server keeps working from its cache when MLflow is down.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from tandem.errors import UserError

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ARTIFACT_NAME = "model"
ADAPTER_ARTIFACT = "adapter"
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: a directory holding an adapter alone
ADAPTER_BASE_TAG = "tandem.adapter_base"
# A version's quality per tier, `tandem.quality.<tier>`: written by distillation and the
# retraining loop (`tandem.rollout.quality`), read by the router (`tandem.serve.students`).
QUALITY_TAG = "tandem.quality."
# What the registered model needs to be reloaded by MLflow's transformers flavor;
# passed explicitly because MLflow's requirement probe trips over torchvision.
PIP_REQUIREMENTS = ["torch", "transformers", "safetensors", "tokenizers"]
# A name starts with a letter or digit: no `..`, no path, no URL reaches the model cache.
MODEL_URI = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")

T = TypeVar("T")


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from; stored as `tandem.*` version tags."""

    run_id: str = ""
    dataset_fingerprint: str = ""
    base_model: str = ""
    git_commit: str = ""
    config_hash: str = ""
    parent_version: str = ""
    trigger: str = ""
    trigger_window: str = ""
    adapter_base: str = ""  # an adapter's base, models:/NAME/VERSION
    teacher_version: str = ""  # a distilled student's teacher, models:/NAME/VERSION
    traffic_window: str = ""  # the teacher's traffic it learned from, START/END (UTC)
    source: str = ""  # an imported base: PACKAGE==VERSION:FILE it was converted from
    source_sha256: str = ""  # ... that file's SHA-256
    conversion: str = ""  # ... and how it was converted
    eval_exact_match: float | None = None
    eval_loss: float | None = None

    def to_tags(self) -> dict[str, str]:
        """Version tags; empty fields are left out rather than stored blank."""
        tags = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None or value == "":
                continue
            tags[f"tandem.{field.name}"] = f"{value:.6g}" if isinstance(value, float) else str(value)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage:
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = tags.get(f"tandem.{field.name}")
            if raw is None:
                continue
            values[field.name] = float(raw) if field.name.startswith("eval_") else raw
        return cls(**values)


def git_commit() -> str:
    """The commit of the code that trains (`Lineage.git_commit`): `TANDEM_GIT_COMMIT` where a
    job's submitter set it, else the checkout's HEAD, else 'unknown'."""
    if os.environ.get("TANDEM_GIT_COMMIT"):
        return os.environ["TANDEM_GIT_COMMIT"]
    for where in (Path.cwd(), Path(__file__).resolve().parent):
        try:
            return subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                check=True, timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
    return "unknown"


def parse_model_uri(uri: str) -> tuple[str, str | None, int | None]:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION` -> (name, alias, version)."""
    match = MODEL_URI.match(uri)
    if match is None:
        raise UserError(f"{uri!r} is not a registry URI (models:/NAME@ALIAS or models:/NAME/VERSION)")
    version = match["version"]
    return match["name"], match["alias"], int(version) if version else None


def mlflow_client(tracking_uri: str | None):
    # Fail fast instead of MLflow's default of minutes of silent retries; our own
    # retry loop decides how long to keep trying and what to tell the user.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def with_retries(
    action: Callable[[], T], what: str, attempts: int = 4, first_delay_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> T:
    """Run `action`, retrying with exponential backoff; re-raise the last error."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:  # MLflow raises many types for "server unreachable"
            if attempt == attempts:
                raise
            log(f"{what} failed ({type(error).__name__}: {str(error)[:200]}); "
                f"retry {attempt}/{attempts - 1} in {delay:.0f} s")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _registration_run(mlflow_run_id: str | None, model_name: str):
    """The MLflow run a registration logs into: the training run, or a run of its own."""
    import mlflow

    if mlflow_run_id:
        return mlflow.start_run(run_id=mlflow_run_id)
    return mlflow.start_run(run_name=f"register-{model_name}")


def _alias_new_version(client, model_name: str, version: int) -> None:
    """A new version is the `challenger`; the model's first is also the `champion`."""
    client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    if not _alias_version(client, model_name, CHAMPION):
        client.set_registered_model_alias(model_name, CHAMPION, str(version))


def register_checkpoint(
    model_dir: Path,
    model_name: str,
    lineage: Lineage,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
) -> int:
    """Log `model_dir` (a `save_pretrained` dir with tokenizer) as a new version.

    The version gets alias `challenger`; the model's first version also becomes
    `champion`. Returns the version number.
    """
    import mlflow

    client = mlflow_client(tracking_uri)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with _registration_run(mlflow_run_id, model_name) as run:
        info = mlflow.transformers.log_model(
            transformers_model=str(model_dir),
            name=ARTIFACT_NAME,
            task="text-generation",
            registered_model_name=model_name,
            save_pretrained=True,
            pip_requirements=PIP_REQUIREMENTS,
        )
        run_id = run.info.run_id
    version = int(info.registered_model_version)
    tags = {"tandem.run_id": run_id, **lineage.to_tags()}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    _alias_new_version(client, model_name, version)
    return version


def register_imported_base(model_dir: Path, model_name: str, lineage: Lineage,
                           tracking_uri: str | None = None) -> tuple[int, bool]:
    """(version, registered now?) of a converted base model: the version whose
    `tandem.source_sha256` is `lineage.source_sha256` when one exists, so importing twice
    registers once; else a new version (`register_checkpoint`)."""
    client = mlflow_client(tracking_uri)
    for mv in client.search_model_versions(f"name='{model_name}'"):
        if (mv.tags or {}).get("tandem.source_sha256") == lineage.source_sha256:
            return int(mv.version), False
    return register_checkpoint(model_dir, model_name, lineage, tracking_uri), True


def register_adapter(
    adapter_dir: Path,
    model_name: str,
    lineage: Lineage,
    tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
) -> int:
    """Log `adapter_dir` (PEFT's adapter config and weights) as a new version of the
    registered model `model_name`, tagged with its base (`lineage.adapter_base`).

    The adapter is logged as plain run artifacts, not a transformers model: MLflow's
    flavor would need the base model to load it. The version's tag and description name
    its base, so the MLflow UI shows what it needs; the registered model's tag follows its
    newest version.
    Aliases as for `register_checkpoint`. Returns the version number.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not lineage.adapter_base:
        raise UserError(f"adapter {model_name}: its base (models:/NAME/VERSION) is not known")
    client = mlflow_client(tracking_uri)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with _registration_run(mlflow_run_id, model_name) as run:
        mlflow.log_artifacts(str(adapter_dir), artifact_path=ADAPTER_ARTIFACT)
        source = mlflow.get_artifact_uri(ADAPTER_ARTIFACT)
        run_id = run.info.run_id
    try:
        client.create_registered_model(model_name, tags={ADAPTER_BASE_TAG: lineage.adapter_base})
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.set_registered_model_tag(model_name, ADAPTER_BASE_TAG, lineage.adapter_base)
    tags = {"tandem.run_id": run_id, **lineage.to_tags()}
    created = client.create_model_version(
        model_name, source=source, run_id=run_id, tags=tags,
        description=f"LoRA adapter: serve it on {lineage.adapter_base}")
    version = int(created.version)
    _alias_new_version(client, model_name, version)
    return version


def _alias_version(client, model_name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def resolve_version(uri: str, tracking_uri: str | None = None) -> tuple[str, int]:
    """Registry URI -> (model name, version number)."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(uri)
    if version is not None:
        return name, version
    try:
        return name, int(mlflow_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise UserError(f"{uri}: no such model or alias ({error.message[:200]})") from None


def download_model(
    uri: str, cache_dir: Path, tracking_uri: str | None = None
) -> tuple[Path, int]:
    """Resolve `uri` and return (local model dir, version), downloading once per version."""
    name, version = resolve_version(uri, tracking_uri)
    target = cache_dir / name / str(version)
    if is_model_dir(target):
        return target, version
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        downloaded = Path(tmp) / "artifacts"  # an adapter's files come without a folder
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(downloaded))
        model_dir = _find_model_dir(downloaded)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tmp) / "staged"
        shutil.move(str(model_dir), staged)
        try:
            staged.rename(target)
        except OSError:
            if not is_model_dir(target):  # lost a race to another downloader
                raise
    return target, version


def is_model_dir(path: Path) -> bool:
    """A full model (`config.json`) or an adapter (`adapter_config.json`) is there."""
    return (path / "config.json").exists() or is_adapter_dir(path)


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).exists()


def _find_model_dir(root: Path) -> Path:
    """The directory holding the model (config.json) or adapter (adapter_config.json) inside
    a registered version's artifacts."""
    for config in sorted(root.rglob("config.json"), key=lambda p: len(p.parts)):
        if (config.parent / "tokenizer_config.json").exists() or any(
            config.parent.glob("*.safetensors")
        ):
            return config.parent
    adapters = sorted(root.rglob(ADAPTER_CONFIG), key=lambda p: len(p.parts))
    if adapters:
        return adapters[0].parent
    raise UserError(f"registered artifact under {root} holds no loadable model (no config.json "
                    f"or {ADAPTER_CONFIG})")


@dataclass(frozen=True)
class VersionRow:
    name: str
    version: int
    aliases: tuple[str, ...]
    created: str
    lineage: Lineage


def list_versions(tracking_uri: str | None = None, name: str | None = None) -> list[VersionRow]:
    """Every version of every registered model (or of `name`), newest first."""
    client = mlflow_client(tracking_uri)
    query = f"name='{name}'" if name else ""
    aliases_of: dict[str, dict[int, list[str]]] = {}
    rows = []
    for mv in client.search_model_versions(query):
        # search results carry no aliases; the registered model has them all
        if mv.name not in aliases_of:
            by_version: dict[int, list[str]] = {}
            for alias, version in client.get_registered_model(mv.name).aliases.items():
                by_version.setdefault(int(version), []).append(alias)
            aliases_of[mv.name] = by_version
        rows.append(VersionRow(
            name=mv.name,
            version=int(mv.version),
            aliases=tuple(sorted(aliases_of[mv.name].get(int(mv.version), []))),
            created=time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000)),
            lineage=Lineage.from_tags(mv.tags or {}),
        ))
    return sorted(rows, key=lambda row: (row.name, -row.version))


def promote(model_name: str, version: int, tracking_uri: str | None = None) -> int | None:
    """Make `version` the champion; the old champion gets alias `previous`. Returns the old one."""
    client = mlflow_client(tracking_uri)
    client.get_model_version(model_name, str(version))  # raises if it does not exist
    old = _alias_version(client, model_name, CHAMPION)
    if old is not None and old != version:
        client.set_registered_model_alias(model_name, PREVIOUS, str(old))
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    return old


def model_version_exists(model_name: str, version: int, tracking_uri: str | None = None) -> bool:
    """Whether `model_name` has `version` (a registry that does not answer raises)."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client(tracking_uri).get_model_version(model_name, str(version))
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False
        raise
    return True


def alias_version(model_name: str, alias: str, tracking_uri: str | None = None) -> int | None:
    """The version an alias points at, or None."""
    return _alias_version(mlflow_client(tracking_uri), model_name, alias)


def version_tags(model_name: str, version: int, tracking_uri: str | None = None) -> dict[str, str]:
    """Every tag of one version (lineage, rollout stage, evaluation scores)."""
    return dict(mlflow_client(tracking_uri).get_model_version(model_name, str(version)).tags or {})


def set_version_tags(model_name: str, version: int, tags: dict[str, str],
                     tracking_uri: str | None = None) -> None:
    """Set `tags` on one version; they show on its page in the MLflow UI."""
    client = mlflow_client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)

"""What the retraining loop must remember across restarts: when each trigger last fired, and which
trigger windows already got a retraining job.

"At most one retraining job per trigger window" has to survive a crash of the loop, so the
state is a small JSON file rewritten atomically (temporary file, fsync, `os.replace`)
on every change. A window id is the trigger's name and the start bucket of its window
(`<name>@<floor(now / window_s)>`). The safe order for the trigger evaluator: derive the job's
submission id from the window id, `claim` it, then submit; after a crash between the two,
the restarted loop sees the claim and Ray refuses a second job with that id anyway.
One state file per watched model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tandem.errors import UserError

VERSION = 1


def window_id(name: str, now: float, window_s: float) -> str:
    """The id of the window of trigger `name` that contains `now`."""
    return f"{name}@{int(now // window_s)}"


class TriggerState:
    """Last fire time per trigger and the submitted windows; written through to `path` if given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._last_fired: dict[str, float] = {}
        self._submitted: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            self._last_fired = {str(k): float(v) for k, v in data["last_fired"].items()}
            self._submitted = {str(k): str(v) for k, v in data["submitted"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path}: not a trigger state file ({error})") from None

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({"version": VERSION, "last_fired": self._last_fired,
                           "submitted": self._submitted}, indent=1, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def last_fired(self, name: str) -> float | None:
        """When trigger `name` last fired (POSIX seconds), if ever."""
        return self._last_fired.get(name)

    def record_fire(self, name: str, now: float) -> None:
        self._last_fired[name] = now
        self._save()

    def already_submitted(self, window_id: str) -> bool:
        return window_id in self._submitted

    def jobs(self) -> dict[str, str]:
        """Window id -> the job submitted for it."""
        return dict(self._submitted)

    def job_of(self, window_id: str) -> str | None:
        """The job submitted for `window_id`, if any."""
        return self._submitted.get(window_id)

    def claim(self, window_id: str, job_id: str) -> bool:
        """Record that `job_id` retrains for `window_id`; False, changing nothing, if the window
        already has a job."""
        if window_id in self._submitted:
            return False
        self._submitted[window_id] = job_id
        self._save()
        return True

"""A content fingerprint for a training dataset, recorded on every model version.

Lineage needs to say "this version was trained on exactly these bytes", even
after files are moved, renamed or listed in another order, so the fingerprint
covers file contents only: the SHA-256 of the sorted per-file SHA-256 digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tandem.errors import UserError

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of one file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(paths: str | Path | Sequence[str | Path]) -> str:
    """Hex SHA-256 identifying the contents of `paths`, independent of names and order."""
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not files:
        raise UserError("no dataset files to fingerprint")
    for path in files:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    digests = sorted(file_sha256(path) for path in files)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()

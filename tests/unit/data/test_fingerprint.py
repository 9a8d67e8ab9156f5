"""Dataset fingerprints: content only, stable, order- and name-independent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tandem.data.fingerprint import dataset_fingerprint
from tandem.errors import UserError


def test_fingerprint_depends_on_content_only(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "sub" / "c.jsonl"
    c.parent.mkdir()
    a.write_text("one\n")
    b.write_text("two\n")
    c.write_text("one\n")
    digests = sorted(hashlib.sha256(x).hexdigest() for x in (b"one\n", b"two\n"))
    expected = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    assert dataset_fingerprint([a, b]) == expected
    assert dataset_fingerprint([str(b), a]) == expected
    assert dataset_fingerprint([c, b]) == expected
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    b.write_text("two!\n")
    assert dataset_fingerprint([a, b]) != expected


def test_fingerprint_of_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.jsonl: no such file"):
        dataset_fingerprint([tmp_path / "nope.jsonl"])

"""The glossary task: deterministic, disjoint splits that cover their vocabularies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tandem.data import task
from tandem.data.task import (
    BASE_WORDS,
    NEW_WORDS,
    SPLIT_ROWS,
    build_splits,
    corpus_lines,
    exact_match,
    exact_match_by_group,
    format_completion,
    format_prompt,
    glossary,
    write_task_dataset,
)


def _read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _words(prompt: str) -> list[str]:
    assert prompt.startswith(task.PROMPT_PREFIX) and prompt.endswith(task.PROMPT_SUFFIX)
    return prompt[len(task.PROMPT_PREFIX) : -len(task.PROMPT_SUFFIX)].split(" ")


def test_vocabularies_are_disjoint_and_sized() -> None:
    assert len(set(BASE_WORDS)) == len(BASE_WORDS) == 48
    assert len(set(NEW_WORDS)) == len(NEW_WORDS) == 16
    assert not set(BASE_WORDS) & set(NEW_WORDS)


def test_glossary_is_injective_made_up_and_pinned() -> None:
    table = glossary()
    assert set(table) == set(BASE_WORDS) | set(NEW_WORDS)
    targets = list(table.values())
    assert len(set(targets)) == len(targets)
    assert not set(targets) & set(table)
    for target in targets:
        assert len(target) == 4 and target[1] in "aeiou" and target[3] in "aeiou"
    # Pinned: a changed mapping would silently invalidate every trained model.
    assert table["red"] == "mipu"
    assert table["star"] == glossary()["star"]


def test_prompt_and_completion_format() -> None:
    table = glossary()
    assert format_prompt(["red", "cat"]) == "translate: red cat =>"
    assert format_completion(["red", "cat"]) == f" {table['red']} {table['cat']}"


def test_written_splits_are_deterministic(tmp_path: Path) -> None:
    first = write_task_dataset(tmp_path / "a", seed=0)
    second = write_task_dataset(tmp_path / "b", seed=0)
    other = write_task_dataset(tmp_path / "c", seed=1)
    assert set(first) == {"train", "holdout", "new", "new_holdout"}
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes()
    assert first["train"].read_bytes() != other["train"].read_bytes()


def test_rows_are_word_by_word_translations(tmp_path: Path) -> None:
    paths = write_task_dataset(tmp_path)
    table = glossary()
    for name, path in paths.items():
        rows = _read(path)
        assert len(rows) == SPLIT_ROWS[name]
        for row in rows:
            assert set(row) == {"prompt", "completion"}
            words = _words(row["prompt"])
            assert 1 <= len(words) <= task.MAX_WORDS
            assert len(set(words)) == len(words)
            assert row["completion"] == " " + " ".join(table[w] for w in words)


def test_splits_are_disjoint_and_cover_their_vocabularies() -> None:
    splits = build_splits(seed=0)
    keys = {name: {tuple(sorted(words)) for words in rows} for name, rows in splits.items()}
    for name, rows in splits.items():
        assert len(keys[name]) == len(rows), f"{name} repeats a word combination"
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not keys[a] & keys[b], f"{a} and {b} share combinations"
    base, new = set(BASE_WORDS), set(NEW_WORDS)
    for name in ("train", "holdout"):
        assert {w for words in splits[name] for w in words} <= base
    assert {w for words in splits["train"] for w in words} == base
    for name in ("new", "new_holdout"):
        assert all(set(words) & new for words in splits[name])
    assert {w for words in splits["new"] for w in words} >= new
    lengths = {len(words) for words in splits["holdout"]}
    assert lengths == {2, 3, 4}


def test_splits_are_stable_across_versions() -> None:
    text = json.dumps(build_splits(seed=0), sort_keys=True)
    # Pinned digest: the data may only change on purpose (bump the glossary salt then).
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == PINNED_SPLITS_DIGEST


def test_corpus_contains_every_word_and_the_prompt_format() -> None:
    text = "\n".join(corpus_lines())
    for word, target in glossary().items():
        assert f" {word}" in text and f" {target}" in text
    assert task.PROMPT_PREFIX in text and task.PROMPT_SUFFIX in text


def test_exact_match_by_group_weighs_each_group_alike() -> None:
    # 1 of 4 holdout rows, 2 of 2 validation rows: (0.25 + 1.0) / 2, not 3 / 6
    predictions, references = ["a", "x", "x", "x", "v", "w"], ["a", "b", "c", "d", "v", "w"]
    assert exact_match_by_group(predictions, references, [0, 0, 0, 0, 1, 1]) == pytest.approx(0.625)
    assert exact_match_by_group(predictions, references, [0] * 6) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="groups"):
        exact_match_by_group(["a"], ["a"], [])


def test_exact_match() -> None:
    assert exact_match([" a b", "c", "x"], ["a b ", "c", "y"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])


PINNED_SPLITS_DIGEST = "8a2853cc9cc62104"

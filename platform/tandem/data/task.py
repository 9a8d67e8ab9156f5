"""The project's own task: glossary translation between English and a made-up language.

Tandem needs a task that a 2-layer model learns on a CPU in a minute, whose
answers are checkable by exact match, and whose data can drift: BASE words
(everyday English) are what the first training run sees; NEW words
(space and weather) are the drifted slice that serving observes later and a
retrain learns from corrections. Each word maps to a fixed made-up word, and a
prompt's answer is the word-by-word translation in the same order::

    translate: red cat =>  fipo zemu

Everything is derived from SHA-256, not `random` or `hash()`, so the glossary
and the splits are byte-identical across Python versions and machines. The
glossary is a fixed fact of the task (the tokenizer is trained on it); `seed`
only changes which word combinations land in which split.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from itertools import product
from pathlib import Path

PROMPT_PREFIX = "translate: "
PROMPT_SUFFIX = " =>"
# A chat request whose last message is `translate: red cat` renders exactly the
# training prompt `translate: red cat =>` (tests check it against format_prompt).
CHAT_TEMPLATE = "{{ messages[-1]['content'] | trim }}" + PROMPT_SUFFIX

BASE_WORDS: tuple[str, ...] = (
    # colours
    "red", "blue", "green", "black", "white", "pink", "brown", "gray",
    # animals
    "cat", "dog", "bird", "fish", "horse", "cow", "duck", "frog",
    "mouse", "bear", "lion", "goat",
    # food
    "bread", "milk", "egg", "rice", "apple", "cake", "soup", "cheese",
    "corn", "pear", "plum", "meat",
    # things at home
    "house", "door", "chair", "table", "bed", "cup", "book", "shoe",
    "hat", "box", "key", "lamp", "spoon", "window", "clock", "bag",
)  # fmt: skip
NEW_WORDS: tuple[str, ...] = (
    "star", "moon", "comet", "planet", "orbit", "rocket", "galaxy", "meteor",
    "storm", "cloud", "rain", "snow", "wind", "thunder", "fog", "frost",
)  # fmt: skip

SPLIT_NAMES = ("train", "holdout", "new", "new_holdout")
SPLIT_ROWS = {"train": 1600, "holdout": 200, "new": 200, "new_holdout": 100}
MAX_WORDS = 4

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_GLOSSARY_SALT = "tandem-glossary-v1"


def format_prompt(words: Sequence[str]) -> str:
    """The prompt for translating `words`, e.g. `translate: red cat =>`."""
    return PROMPT_PREFIX + " ".join(words) + PROMPT_SUFFIX


def format_completion(words: Sequence[str]) -> str:
    """The expected completion for `words`, with its leading space: ` fipo zemu`."""
    table = _glossary()
    return " " + " ".join(table[word] for word in words)


def reference_completion(prompt: str) -> str | None:
    """The task's answer to a prompt in the training format; None when it is not a prompt
    of the task (a word outside the glossary, another format)."""
    if not (prompt.startswith(PROMPT_PREFIX) and prompt.endswith(PROMPT_SUFFIX)):
        return None
    words = prompt[len(PROMPT_PREFIX):-len(PROMPT_SUFFIX)].split()
    if not words or any(word not in _glossary() for word in words):
        return None
    return format_completion(words)


def _digest(*parts: object) -> int:
    text = ":".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def glossary() -> dict[str, str]:
    """Every BASE and NEW word mapped to its made-up consonant-vowel-consonant-vowel word."""
    return dict(_glossary())


@functools.cache
def _glossary() -> dict[str, str]:
    sources = set(BASE_WORDS) | set(NEW_WORDS)
    syllables = [c + v for c, v in product(_CONSONANTS, _VOWELS)]
    candidates = sorted(
        (a + b for a, b in product(syllables, syllables) if a + b not in sources),
        key=lambda word: _digest(_GLOSSARY_SALT, word),
    )
    return dict(zip(BASE_WORDS + NEW_WORDS, candidates, strict=False))


class _Draws:
    """An endless, version-stable stream of integers below a bound."""

    def __init__(self, seed: int, label: str) -> None:
        self._seed, self._label, self._count = seed, label, 0

    def below(self, bound: int) -> int:
        self._count += 1
        return _digest(self._seed, self._label, self._count) % bound

    def sample(self, pool: Sequence[str], k: int) -> list[str]:
        remaining = list(pool)
        return [remaining.pop(self.below(len(remaining))) for _ in range(k)]


def _draw_combinations(
    draws: _Draws, rows: int, seen: set[tuple[str, ...]], must_include: Sequence[str] = ()
) -> list[list[str]]:
    """`rows` word lists of 2..MAX_WORDS words whose word sets are not in `seen`."""
    pool = BASE_WORDS + tuple(w for w in must_include if w not in BASE_WORDS)
    out: list[list[str]] = []
    while len(out) < rows:
        length = 2 + draws.below(MAX_WORDS - 1)
        if must_include:
            anchor = must_include[draws.below(len(must_include))]
            rest = draws.sample([w for w in pool if w != anchor], length - 1)
            words = rest[:]
            words.insert(draws.below(length), anchor)
        else:
            words = draws.sample(pool, length)
        key = tuple(sorted(words))
        if key not in seen:
            seen.add(key)
            out.append(words)
    return out


def build_splits(seed: int = 0) -> dict[str, list[list[str]]]:
    """The source-word lists of every split; word sets never repeat across splits.

    `train` and `new` open with every single word of their vocabulary so each
    word is seen alone once; the holdouts hold only combinations never trained on.
    """
    seen: set[tuple[str, ...]] = {(w,) for w in BASE_WORDS + NEW_WORDS}
    singles_train = [[w] for w in BASE_WORDS]
    singles_new = [[w] for w in NEW_WORDS]
    return {
        "train": singles_train
        + _draw_combinations(
            _Draws(seed, "train"), SPLIT_ROWS["train"] - len(singles_train), seen
        ),
        "holdout": _draw_combinations(_Draws(seed, "holdout"), SPLIT_ROWS["holdout"], seen),
        "new": singles_new
        + _draw_combinations(
            _Draws(seed, "new"), SPLIT_ROWS["new"] - len(singles_new), seen, NEW_WORDS
        ),
        "new_holdout": _draw_combinations(
            _Draws(seed, "new_holdout"), SPLIT_ROWS["new_holdout"], seen, NEW_WORDS
        ),
    }


def write_task_dataset(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write every split as `<out_dir>/<split>.jsonl` rows `{"prompt", "completion"}`.

    Files are written to a temporary name and renamed, so a concurrent reader
    never sees half a split. Returns split name -> file path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in build_splits(seed).items():
        path = out_dir / f"{name}.jsonl"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for words in rows:
                row = {"prompt": format_prompt(words), "completion": format_completion(words)}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        paths[name] = path
    return paths


def corpus_lines() -> Iterator[str]:
    """All text the task can contain, for training a tokenizer that knows every word whole."""
    table = glossary()
    for word, target in table.items():
        yield format_prompt([word]) + " " + target
    yield format_prompt(BASE_WORDS) + format_completion(BASE_WORDS)
    yield format_prompt(NEW_WORDS) + format_completion(NEW_WORDS)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after stripping whitespace."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return 0.0
    hits = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
    return hits / len(references)


def exact_match_by_group(predictions: Sequence[str], references: Sequence[str],
                         groups: Sequence[int]) -> float:
    """The mean of each group's exact match: a small eval file (a retraining run's
    validation corrections) counts as much as a large one (the task's holdout)."""
    if not len(predictions) == len(references) == len(groups):
        raise ValueError(f"{len(predictions)} predictions, {len(references)} references and "
                         f"{len(groups)} groups")
    if not references:
        return 0.0
    scores = [exact_match([p for p, g in zip(predictions, groups) if g == group],
                          [r for r, g in zip(references, groups) if g == group])
              for group in sorted(set(groups))]
    return sum(scores) / len(scores)

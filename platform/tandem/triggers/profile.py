"""What a model's training prompts looked like, so the retraining loop can tell when serving
traffic drifts away.

A `DataProfile` is saved beside a training run and compared with recent prompts by
the population stability index (PSI) on two distributions: prompt length in words,
over fixed bins, and word frequencies over the training data's top-K words plus one
"other" bucket (new vocabulary lands there). Both are cheap, need no tokenizer, and
PSI's usual reading applies: below 0.1 stable, 0.1 to 0.2 moderate, above 0.2 drift.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tandem.errors import UserError

LENGTH_EDGES = (0, 2, 3, 4, 5, 6, 8, 10, 13, 16, 24, 32, 48, 64, 128, 256, 512, 1024)
_WORD = re.compile(r"\w+")


def words(prompt: str) -> list[str]:
    """The lowercase words of a prompt, as the profile counts them."""
    return _WORD.findall(prompt.lower())


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected`, both counts or shares over the
    same bins: sum of (a - e) * ln(a / e) over bins after normalizing and flooring at `eps`."""
    if len(expected) != len(actual) or not expected:
        raise ValueError("psi needs two distributions over the same, non-empty bins")
    if min(expected) < 0 or min(actual) < 0:
        raise ValueError("psi needs non-negative counts")
    total_e, total_a = sum(expected), sum(actual)
    if total_e <= 0 or total_a <= 0:
        raise ValueError("psi needs distributions with a positive total")
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e / total_e, eps), max(a / total_a, eps)
        value += (a - e) * math.log(a / e)
    return value


def _length_counts(prompts: Iterable[str], edges: Sequence[int]) -> list[int]:
    counts = [0] * len(edges)
    for prompt in prompts:
        counts[max(bisect_right(edges, len(words(prompt))) - 1, 0)] += 1
    return counts


def _token_counts(prompts: Iterable[str], vocabulary: Sequence[str]) -> list[int]:
    slot = {word: index for index, word in enumerate(vocabulary)}
    counts = [0] * (len(vocabulary) + 1)
    for prompt in prompts:
        for word in words(prompt):
            counts[slot.get(word, len(vocabulary))] += 1
    return counts


class DataProfile(BaseModel):
    """Prompt-length and word distributions of a training set (shares summing to 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    prompts: int = Field(description="How many prompts the profile was built from.")
    length_edges: tuple[int, ...] = Field(
        description="Lower edges of the word-count bins; the last bin is open-ended.")
    length_shares: tuple[float, ...] = Field(description="Share of prompts per length bin.")
    vocabulary: tuple[str, ...] = Field(description="The top-K words of the training prompts.")
    token_shares: tuple[float, ...] = Field(
        description="Share of words per vocabulary entry, then the share of all other words.")

    @model_validator(mode="after")
    def _consistent(self) -> DataProfile:
        if list(self.length_edges) != sorted(set(self.length_edges)) or not self.length_edges:
            raise ValueError("length_edges must be strictly increasing")
        if len(self.length_shares) != len(self.length_edges):
            raise ValueError("length_shares needs one share per length bin")
        if len(self.token_shares) != len(self.vocabulary) + 1:
            raise ValueError("token_shares needs one share per word plus 'other'")
        return self

    @classmethod
    def build(cls, prompts: Sequence[str], *, top_k: int = 200,
              length_edges: Sequence[int] = LENGTH_EDGES) -> DataProfile:
        """The profile of `prompts` (training prompts), keeping the `top_k` most frequent words."""
        if not prompts:
            raise ValueError("cannot profile an empty set of prompts")
        counts = Counter(word for prompt in prompts for word in words(prompt))
        vocabulary = tuple(word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k])
        lengths = _length_counts(prompts, length_edges)
        tokens = _token_counts(prompts, vocabulary)
        total_tokens = sum(tokens) or 1
        return cls(prompts=len(prompts), length_edges=tuple(length_edges),
                   length_shares=tuple(count / len(prompts) for count in lengths),
                   vocabulary=vocabulary, token_shares=tuple(count / total_tokens for count in tokens))

    def compare(self, prompts: Sequence[str]) -> dict[str, float]:
        """PSI of `prompts` against this profile: `psi_length` and `psi_tokens` (0.0 when the
        prompts have no words at all)."""
        if not prompts:
            raise ValueError("cannot compare an empty set of prompts")
        tokens = _token_counts(prompts, self.vocabulary)
        return {"psi_length": psi(self.length_shares, _length_counts(prompts, self.length_edges)),
                "psi_tokens": psi(self.token_shares, tokens)
                if sum(tokens) and sum(self.token_shares) else 0.0}

    def save(self, path: str | Path) -> None:
        """Write the profile as JSON."""
        Path(path).write_text(self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DataProfile:
        """Read a profile written by `save`; `UserError` names the file when it is not one."""
        try:
            return cls.model_validate_json(Path(path).read_text())
        except OSError as error:
            raise UserError(f"{path}: cannot read data profile ({error.strerror})") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "file"
            raise UserError(f"{path}: not a data profile ({where}: {first['msg']})") from None

"""What one tenant may move: clients are inputs to the model.

Feedback becomes training data (corrections) and routing decisions (a version's live
quality), so one client rating or correcting in bulk must not outvote the others. Pure,
so the router (per request) and the loop (per retraining set) apply the same bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def bounded_by_tenant(items: Sequence[T], tenant_of: Callable[[T], str | None]) -> list[T]:
    """`items` (oldest first) with no tenant making up more than half of them once two or
    more tenants are among them. Only the largest tenant can be over half; it keeps as many
    of its items as all the others have together, its latest. A single tenant keeps
    everything: one client rating its own deployment is not an attack."""
    counts = Counter(tenant_of(item) for item in items)
    if len(counts) < 2:
        return list(items)
    largest, count = counts.most_common(1)[0]
    excess = count - (len(items) - count)
    out = []
    for item in items:
        if excess > 0 and tenant_of(item) == largest:
            excess -= 1
            continue
        out.append(item)
    return out

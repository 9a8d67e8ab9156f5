"""What a user can field of each GPU type, and what a fleet of them costs to add.

A fleet is replicas per GPU type. What it costs is the rent of the GPUs it needs beyond
those the user already owns: owned GPUs are paid for, so the plan uses them first and
they add $0 (the marginal cost). `--available` caps the GPUs a user can rent of a type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tandem.perf import ReplicaModel

Fleet = dict[str, int]  # GPU type -> replicas


@dataclass(frozen=True)
class Offer:
    """One GPU type: its replica model, the GPUs owned, and the GPUs that may be rented
    (None: as many as needed)."""

    replica: ReplicaModel
    owned_gpus: int = 0
    rentable_gpus: int | None = None

    @property
    def gpu_price(self) -> float:
        return self.replica.price_per_hour / self.replica.tp

    @property
    def max_replicas(self) -> int | None:
        if self.rentable_gpus is None:
            return None
        return (self.owned_gpus + self.rentable_gpus) // self.replica.tp

    @property
    def owned_replicas(self) -> int:
        return self.owned_gpus // self.replica.tp

    def rented_gpus(self, replicas: int) -> int:
        return max(0, replicas * self.replica.tp - self.owned_gpus)

    def cost_per_hour(self, replicas: int) -> float:
        """Rent of the GPUs `replicas` need beyond the owned ones."""
        return self.gpu_price * self.rented_gpus(replicas)

    def allows(self, replicas: int) -> bool:
        return replicas >= 0 and (self.max_replicas is None or replicas <= self.max_replicas)


def fleet_cost(offers: Mapping[str, Offer], fleet: Mapping[str, int]) -> float:
    """USD/hour the fleet adds: rented GPUs only."""
    return sum(offers[gpu].cost_per_hour(count) for gpu, count in fleet.items())


def owned_in_use(offers: Mapping[str, Offer], fleet: Mapping[str, int]
                 ) -> dict[str, dict[str, float]]:
    """Per GPU type with owned GPUs: how many the fleet uses and their would-be rent."""
    used = {}
    for gpu, offer in offers.items():
        if offer.owned_gpus:
            gpus = min(offer.owned_gpus, fleet.get(gpu, 0) * offer.replica.tp)
            used[gpu] = {"owned": offer.owned_gpus, "used": gpus,
                         "would_be_rent_per_hour": round(gpus * offer.gpu_price, 4)}
    return used


def gpus_of(offers: Mapping[str, Offer], fleet: Mapping[str, int]) -> dict[str, int]:
    return {gpu: count * offers[gpu].replica.tp for gpu, count in fleet.items()}


def allowed(offers: Mapping[str, Offer], fleet: Mapping[str, int]) -> bool:
    return all(offers[gpu].allows(count) for gpu, count in fleet.items())


def normalized(fleet: Mapping[str, int]) -> Fleet:
    """The fleet without empty types, in a stable order (a cache key's order)."""
    return {gpu: count for gpu, count in sorted(fleet.items()) if count > 0}


def describe(fleet: Mapping[str, int], offers: Mapping[str, Offer] | None = None) -> str:
    """`2 x H100 + 1 x H200`, with GPUs per replica where a replica spans several."""
    parts = []
    for gpu, count in fleet.items():
        tp = offers[gpu].replica.tp if offers else 1
        parts.append(f"{count} x {gpu}" + (f" (TP{tp}: {count * tp} GPUs)" if tp > 1 else ""))
    return " + ".join(parts) or "nothing"


def ceiling(value: float) -> int:
    """Whole replicas for a fractional requirement (a hair over an integer stays it)."""
    return max(1, math.ceil(value - 1e-9))

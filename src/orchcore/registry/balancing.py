"""Instance selection strategies over a service's healthy instances.

Each strategy keeps its own small state per key (a counter, current weights) in
process; selection is a few dictionary operations, with no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol
from uuid import UUID

from orchcore.registry.endpoint import Endpoint


class Strategy(Protocol):
    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint: ...


class InFlight(Protocol):
    def __getitem__(self, key: UUID) -> int: ...


class RoundRobin:
    """Each instance in turn: over k·N picks each of N instances is picked k times."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint:
        position = self._next.get(key, 0)
        self._next[key] = position + 1
        return healthy[position % len(healthy)]


class PowerOfTwoChoices:
    """Least connections by two random choices: the less busy of two distinct instances.

    Cheaper than scanning every instance and, unlike a strict minimum, it does not
    send every new call to the same instance when several daemons share a view.
    The busiest instance is never picked while another has fewer calls in flight.
    """

    def __init__(self, in_flight: InFlight, rng: random.Random | None = None) -> None:
        self._in_flight = in_flight
        self._rng = rng or random.Random()

    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint:
        count = len(healthy)
        if count == 1:
            return healthy[0]
        # Two distinct indices from two draws (random.sample costs more than the pick).
        first = int(self._rng.random() * count)
        second = int(self._rng.random() * (count - 1))
        if second >= first:
            second += 1
        a, b = healthy[first], healthy[second]
        return b if self._in_flight[b.id] < self._in_flight[a.id] else a


class SmoothWeighted:
    """Nginx-style smooth weighted round robin: exact proportions, evenly spread.

    An instance's weight is taken from ``weights`` (by instance id, then by version)
    when given, else from ``metadata.weight`` (default 1). Instances of weight 0 get no
    traffic while any instance has a positive weight.
    """

    def __init__(self) -> None:
        self._current: dict[str, dict[UUID, int]] = {}

    def pick(
        self, key: str, healthy: Sequence[Endpoint], weights: Mapping[str, int] | None = None
    ) -> Endpoint:
        weighted = [(e, _weight(e, weights)) for e in healthy]
        positive = [(e, w) for e, w in weighted if w > 0] or [(e, 1) for e, _ in weighted]
        current = self._current.setdefault(key, {})
        total = 0
        best: Endpoint | None = None
        for endpoint, weight in positive:
            current[endpoint.id] = current.get(endpoint.id, 0) + weight
            total += weight
            if best is None or current[endpoint.id] > current[best.id]:
                best = endpoint
        assert best is not None
        current[best.id] -= total
        return best


def _weight(endpoint: Endpoint, weights: Mapping[str, int] | None) -> int:
    if weights:
        if endpoint.instance_id in weights:
            return weights[endpoint.instance_id]
        if endpoint.version in weights:
            return weights[endpoint.version]
    return endpoint.weight

"""Instance selection strategies over a service's healthy instances.

Each strategy keeps its own small state per service (a counter, current weights)
in process; selection is a few dictionary operations, with no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from orchcore.registry.endpoint import Endpoint


class Strategy(Protocol):
    def pick(self, service: str, healthy: Sequence[Endpoint]) -> Endpoint: ...


class InFlight(Protocol):
    def __getitem__(self, key: UUID) -> int: ...


class RoundRobin:
    """Each instance in turn: over k·N picks each of N instances is picked k times."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def pick(self, service: str, healthy: Sequence[Endpoint]) -> Endpoint:
        position = self._next.get(service, 0)
        self._next[service] = position + 1
        return healthy[position % len(healthy)]


class LeastConnections:
    """The instance with the fewest calls in flight from this process; ties in turn."""

    def __init__(self, in_flight: InFlight) -> None:
        self._in_flight = in_flight
        self._tiebreak = RoundRobin()

    def pick(self, service: str, healthy: Sequence[Endpoint]) -> Endpoint:
        fewest = min(self._in_flight[e.id] for e in healthy)
        candidates = [e for e in healthy if self._in_flight[e.id] == fewest]
        return self._tiebreak.pick(service, candidates)


class SmoothWeighted:
    """Nginx-style smooth weighted round robin: exact proportions, evenly spread.

    An instance's weight is ``metadata.weight`` (default 1). Instances of weight 0
    get no traffic while any instance has a positive weight.
    """

    def __init__(self) -> None:
        self._current: dict[str, dict[UUID, int]] = {}

    def pick(self, service: str, healthy: Sequence[Endpoint]) -> Endpoint:
        weighted = [e for e in healthy if e.weight > 0] or list(healthy)
        current = self._current.setdefault(service, {})
        total = 0
        best: Endpoint | None = None
        for endpoint in weighted:
            weight = endpoint.weight if endpoint.weight > 0 else 1
            current[endpoint.id] = current.get(endpoint.id, 0) + weight
            total += weight
            if best is None or current[endpoint.id] > current[best.id]:
                best = endpoint
        assert best is not None
        current[best.id] -= total
        return best

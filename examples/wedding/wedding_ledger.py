"""A service's record of its mutating calls: counts, and the answer kept per Idempotency-Key.

One ledger serves all instances of a service, as a shared database would behind
real replicas: a retry that lands on another instance still finds the first
answer. Exactly-once checks read the counts: ``calls`` is every request that
arrived, ``effects`` only those that changed state.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: How many recent traceparents ``GET /_stats`` shows.
RECENT_TRACES = 10


@dataclass
class Outcome:
    """What a business operation answered, and whether it changed state."""

    status: int
    body: dict[str, Any]
    changed: bool = False


@dataclass
class CallCounts:
    calls: int = 0
    effects: int = 0


@dataclass
class _Remembered:
    fingerprint: str
    outcome: Outcome


@dataclass
class TraceSeen:
    traceparent: str
    instance_id: str
    method: str
    path: str


def request_fingerprint(method: str, path: str, payload: dict[str, Any]) -> str:
    """Identifies a request's meaning, so a key reused for another request is caught."""
    canonical = json.dumps([method, path, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CallLedger:
    totals: CallCounts = field(default_factory=CallCounts)
    by_key: dict[str, CallCounts] = field(default_factory=dict)
    by_instance: dict[str, CallCounts] = field(default_factory=dict)
    traces: deque[TraceSeen] = field(default_factory=lambda: deque(maxlen=RECENT_TRACES))
    _answers: dict[str, _Remembered] = field(default_factory=dict)

    def count_call(self, instance_id: str, key: str | None) -> None:
        for counts in self._counters(instance_id, key):
            counts.calls += 1

    def perform(
        self,
        instance_id: str,
        key: str | None,
        fingerprint: str,
        operation: Callable[[], Outcome],
    ) -> tuple[Outcome, bool]:
        """Run ``operation`` unless ``key`` already has an answer; return (answer, replayed).

        The operation is synchronous, so no other request can run between the
        look-up and the store: two requests with one key never both take effect.
        Answers of 5xx are not kept, so a retry after a server failure runs again.
        """
        if key is not None and (seen := self._answers.get(key)) is not None:
            if seen.fingerprint != fingerprint:
                return Outcome(422, _key_reused(key)), False
            return seen.outcome, True
        outcome = operation()
        if outcome.changed:
            for counts in self._counters(instance_id, key):
                counts.effects += 1
        if key is not None and outcome.status < 500:
            self._answers[key] = _Remembered(fingerprint, outcome)
        return outcome, False

    def note_trace(self, seen: TraceSeen) -> None:
        self.traces.append(seen)

    def snapshot(self, instance_id: str) -> dict[str, Any]:
        mine = self.by_instance.get(instance_id, CallCounts())
        return {
            "calls": self.totals.calls,
            "effects": self.totals.effects,
            "by_key": {key: asdict(counts) for key, counts in self.by_key.items()},
            "by_instance": {name: asdict(counts) for name, counts in self.by_instance.items()},
            "instance": {"instance_id": instance_id, **asdict(mine)},
            "last_traceparent": self.traces[-1].traceparent if self.traces else None,
            "recent_traces": [asdict(seen) for seen in reversed(self.traces)],
        }

    def _counters(self, instance_id: str, key: str | None) -> list[CallCounts]:
        counters = [self.totals, self.by_instance.setdefault(instance_id, CallCounts())]
        if key is not None:
            counters.append(self.by_key.setdefault(key, CallCounts()))
        return counters


def _key_reused(key: str) -> dict[str, Any]:
    return {
        "detail": f"Idempotency-Key {key!r} was already used for a different request",
        "code": "idempotency_key_reused",
    }

"""History past its window, removed in batches: call events, finished workflows'
timelines, breaker transitions and the audit log.

Each of these tables grows with every call, step and operator action and nothing else
removes from it, so a year of wedding seasons would otherwise be a year of rows behind
every query and backup. The daemons call :meth:`HistoryRetention.prune` now and then.
A batch is one short transaction holding a per-table advisory lock: two daemons never
prune the same table at once (the one that finds it taken skips that table this round),
and a daemon that dies mid-batch leaves nothing held.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.saga.status import NEEDS_PERSON, TERMINAL

Q = Queries("orchcore.retention")

#: The first advisory-lock key of every retention lock; the second names the table.
RETENTION_LOCK_CLASS = 7_400_2027
#: Rows a batch removes at most: a few milliseconds of locks on an indexed table.
BATCH_SIZE = 5000
#: A workflow whose timeline may go: finished, and not waiting for a person.
FINISHED: frozenset[str] = frozenset(TERMINAL - NEEDS_PERSON)


class History(StrEnum):
    """A history table under retention (the value is the table's name)."""

    SERVICE_EVENTS = "service_events"
    WORKFLOW_EVENTS = "workflow_events"
    BREAKER_TRANSITIONS = "circuit_breaker_transitions"
    AUDIT_LOG = "audit_log"


_PRUNE = {
    History.SERVICE_EVENTS: Q.prune_service_events,
    History.WORKFLOW_EVENTS: Q.prune_workflow_events,
    History.BREAKER_TRANSITIONS: Q.prune_breaker_transitions,
    History.AUDIT_LOG: Q.prune_audit_log,
}
LOCK_KEYS = {history: index for index, history in enumerate(History, start=1)}


def windows_of_days(days: Mapping[History, float]) -> dict[History, timedelta | None]:
    """Windows from days, as the settings give them: 0 keeps that history forever."""
    return {history: timedelta(days=n) if n > 0 else None for history, n in days.items()}


class HistoryRetention:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        windows: Mapping[History, timedelta | None],
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._db = db
        self._clock = clock
        self.windows = dict(windows)
        self.batch_size = batch_size

    async def prune_batch(self, history: History) -> int | None:
        """Remove one batch of ``history`` older than its window; the rows removed, or
        None when another daemon is pruning that table right now."""
        window = self.windows.get(history)
        if window is None:
            return 0
        cutoff = self._clock.now() - window
        args: tuple[object, ...] = (cutoff, self.batch_size)
        if history is History.WORKFLOW_EVENTS:
            args += (sorted(FINISHED),)
        async with self._db.transaction() as conn:
            if not await conn.fetchval(
                Q.try_retention_lock, RETENTION_LOCK_CLASS, LOCK_KEYS[history]
            ):
                return None
            status = await conn.execute(_PRUNE[history], *args)
        return int(status.split()[-1])

    async def prune(self, *, max_batches: int = 20) -> dict[History, int]:
        """Up to ``max_batches`` batches of each table (a backlog waits for the next
        round rather than keep one daemon busy); the rows removed, by table."""
        removed: dict[History, int] = {}
        for history in History:
            removed[history] = 0
            for _ in range(max_batches):
                count = await self.prune_batch(history)
                if count is None:  # another daemon has it: leave the table to it
                    break
                removed[history] += count
                if count < self.batch_size:
                    break
        return removed

"""The one source of time for the engine.

Every time-dependent rule (health intervals, TTLs, leases, deregistration) reads
``clock.now()`` and waits with ``clock.sleep()``, so tests drive time instead of
sleeping. Shared time across daemons comes from the database: the system clock
is calibrated against PostgreSQL's ``now()`` once connected, so two daemons on
machines with skewed clocks still agree on lease expiry.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """Wall time, shifted by the offset measured against the database server."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def calibrate(self, server_now: datetime, round_trip_seconds: float) -> None:
        local_mid = datetime.now(UTC) - timedelta(seconds=round_trip_seconds / 2)
        self._offset = server_now - local_mid

    @property
    def offset(self) -> timedelta:
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when a test advances it.

    ``sleep`` parks the caller until the clock has been advanced past its wake
    time, so a worker loop blocked in ``sleep`` runs exactly when the test says.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
        self._start = self._now
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        #: every duration a caller asked to sleep, in order (tests read backoff from it)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=seconds), future))
        try:
            await future
        finally:
            self._sleepers = [(due, f) for due, f in self._sleepers if f is not future]

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every sleeper that is now due run."""
        self._now += timedelta(seconds=seconds)
        for due, future in list(self._sleepers):
            if due <= self._now and not future.done():
                future.set_result(None)
        # Give woken tasks a chance to run before the test looks at the result.
        for _ in range(5):
            await asyncio.sleep(0)

    def next_wake(self) -> datetime | None:
        """When the earliest sleeper is due (None if nobody sleeps)."""
        due = [when for when, f in self._sleepers if not f.done()]
        return min(due) if due else None

    @property
    def sleeper_count(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

"""Rows buffered in process and written with COPY, off the hot path.

What orch observes (call attempts in service_events, spans in distributed_traces) is
written this way: ``record`` only appends to a list, and a task writes the list every
``flush_interval`` seconds, or sooner when it fills, in one COPY. A crash loses at most
the last interval's rows: these are observations, not state. While the database cannot
be written, rows are kept for the next try up to ``keep_factor`` times the buffer;
beyond that they are dropped and counted, and one warning says so per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from orchcore.db import Database
from orchcore.db.failures import UNREACHABLE

T = TypeVar("T")
log = logging.getLogger("orch.db")


class CopyBuffer(Generic[T]):
    def __init__(
        self,
        db: Database,
        *,
        table: str,
        columns: Sequence[str],
        to_record: Callable[[T], tuple[Any, ...]],
        what: str,
        flush_interval: float = 0.2,
        max_buffer: int = 1000,
        keep_factor: int = 10,
    ) -> None:
        self._db = db
        self._table = table
        self._columns = tuple(columns)
        self._to_record = to_record
        self._what = what
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._keep_factor = keep_factor
        self._buffer: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._failing = False
        self.written = 0
        self.dropped = 0

    def record(self, item: T) -> None:
        self._buffer.append(item)
        if len(self._buffer) >= self._max_buffer:
            self._full.set()

    def record_many(self, items: Iterable[T]) -> None:
        self._buffer.extend(items)
        if len(self._buffer) >= self._max_buffer:
            self._full.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        """Start writing (again, after stop); a second start while running does nothing."""
        self.ensure_running()

    def ensure_running(self) -> None:
        """start() for callers that cannot await (inside a running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_forever(), name=f"write-{self._table}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer, []
            if not await self._write(batch):
                return

    async def _write(self, batch: list[T]) -> bool:
        try:
            records = [self._to_record(item) for item in batch]
            async with self._db.pool.acquire() as conn:
                await conn.copy_records_to_table(
                    self._table, records=records, columns=self._columns
                )
        except UNREACHABLE as exc:
            self._keep_for_later(batch, exc)
            return False
        self.written += len(batch)
        if self._failing:
            log.info("%s written again", self._what)
            self._failing = False
        return True

    def _keep_for_later(self, batch: list[T], exc: BaseException) -> None:
        kept = len(self._buffer) + len(batch) <= self._max_buffer * self._keep_factor
        if kept:
            self._buffer = batch + self._buffer
        else:
            self.dropped += len(batch)
        if not self._failing or not kept:  # once an outage, not five times a second
            log.warning(
                "could not write %d %s: %s; %s",
                len(batch),
                self._what,
                exc,
                "kept for the next try" if kept else "dropped (too many waiting)",
            )
        self._failing = True

    async def _flush_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the inner wait finishes, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._full.wait()
            self._full.clear()
            try:
                await self.flush()
            except Exception:  # never let recording die quietly: log and go on
                log.exception("writing %s failed", self._what)

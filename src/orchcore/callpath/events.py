"""Recording call attempts in service_events, in batches off the hot path.

Each attempt is one row. Rows are buffered in process and written with COPY every
``flush_interval`` seconds (or sooner when the buffer fills), so recording costs a
call no database round trip. A crash loses at most the last interval's rows: these
are observations, not state (breaker transitions, which are state, are written
before they take effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchcore.db import Database
from orchcore.db.failures import UNREACHABLE

log = logging.getLogger("orch.events")

_COLUMNS = (
    "id", "event_type", "trace_id", "span_id", "parent_span_id", "source_service",
    "target_service", "method", "endpoint", "status_code", "duration_ms", "error_message",
    "correlation_id", "headers", "created_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallEvent:
    event_type: str  # response | error | timeout | rejected
    trace_id: str
    span_id: str
    parent_span_id: str | None
    source: str
    target: str
    method: str
    endpoint: str
    status_code: int | None
    duration_ms: int | None
    error: str | None
    correlation_id: str | None
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> tuple[Any, ...]:
        return (
            uuid.uuid4(),
            self.event_type,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.source,
            self.target,
            self.method,
            self.endpoint,
            self.status_code,
            self.duration_ms,
            self.error,
            self.correlation_id,
            self.details,
            self.at,
        )


class ServiceEventRecorder:
    def __init__(
        self, db: Database, *, flush_interval: float = 0.2, max_buffer: int = 1000
    ) -> None:
        self._db = db
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buffer: list[CallEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._failing = False
        self.written = 0

    def record(self, event: CallEvent) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self._max_buffer:
            self._full.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="service-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            async with self._db.pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "service_events", records=[e.as_record() for e in batch], columns=_COLUMNS
                )
            self.written += len(batch)
        except UNREACHABLE as exc:
            # Keep them for the next round unless the buffer would grow without bound.
            kept = len(self._buffer) + len(batch) <= self._max_buffer * 10
            if kept:
                self._buffer = batch + self._buffer
            if not self._failing or not kept:  # once an outage, not five times a second
                log.warning(
                    "could not write %d call events: %s; %s",
                    len(batch),
                    exc,
                    "kept for the next try" if kept else "dropped (too many waiting)",
                )
            self._failing = True
            return
        if self._failing:
            log.info("call events written again")
            self._failing = False

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
                log.exception("writing call events failed")

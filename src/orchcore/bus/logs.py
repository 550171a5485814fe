"""message_logs: one row per message, written once, in batches off the hot path.

Why so. A raw PGMQ client costs one statement per send, per read and per delete, and
the benchmark holds orch to within 15% of that. A log row written in the statement of
each send, receive and ack would double what PostgreSQL writes per message (and on a
server bound by its WAL flushes, what it writes is what it costs). So:

- a live message needs no log row: its PGMQ row is the record (enqueue time, read
  count, last read, visibility), and the listing of a queue's messages reads it there;
- its row in message_logs is written when its life ends, from facts the ending
  statement returns: the ack (a delete) returns enqueue time, read count and last
  read, so one row holds produced, delivered (with the retry count) and acked, with
  the processing time, written once with no read and no update. A nack's 'failed'
  event is the only other hot-path record;
- those records are merged in memory and written every ``FLUSH_SECONDS`` in one
  statement for the batch (orch_bus_log_events), which also adds to this process's
  own counters row (no two processes wait on one row);
- the rare events an operator acts on (dead_lettered, expired, redriven, purged) are
  written by the database functions that move the message, in its transaction: they
  are never lost and never ahead of the message.

The price: a process killed hard loses up to ``FLUSH_SECONDS`` of its acks' and
nacks' log rows. The messages themselves are never at risk (the ack's delete is
committed, PGMQ holds the rest); what is lost is history, the trade the tracing buffer
makes too.

Rows are written in (queue, message) order, so two processes flushing overlapping rows
cannot deadlock; a failed flush keeps its records and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from orchcore.bus.models import MessageEvent
from orchcore.db import Database, Queries

log = logging.getLogger("orch.bus")
Q = Queries("orchcore.bus")

FLUSH_SECONDS = 0.5
#: A flush writes at most this many rows per statement.
BATCH_ROWS = 2000
#: Events kept while the database cannot be written; beyond it the oldest are dropped.
MAX_PENDING = 200_000

LogRecord = dict[str, Any]

#: The columns of a record, in the order orch_bus_log_rows takes them after the writer.
COLUMNS = (
    "queue_name", "message_id", "status", "status_at", "producer_service",
    "consumer_service", "message_type", "correlation_id", "message_size_bytes",
    "retry_count", "delivered_at", "consumed_at", "processing_time_ms", "error_message",
    "message_payload", "headers", "produced_at", "events",
)  # fmt: skip

_FIRST_WINS = ("producer_service", "message_type", "correlation_id", "message_size_bytes")
_LAST_WINS = (
    "consumer_service",
    "consumed_at",
    "processing_time_ms",
    "error_message",
    "message_payload",
)


def event_record(
    queue_name: str,
    message_id: int | str,
    event: MessageEvent,
    at: datetime,
    **facts: Any,
) -> LogRecord:
    """One lifecycle record: ``facts`` are its columns. Its events list holds ``event``
    unless the columns say it all (an ack: produced_at, delivered_at, consumed_at)."""
    record: LogRecord = {
        "queue_name": queue_name,
        "message_id": str(message_id),
        "status": event.value,
        "status_at": at,
        **facts,
    }
    if event is not MessageEvent.ACKED:
        detail: dict[str, Any] = {"event": event.value, "at": at.isoformat()}
        for key, name in (
            ("retry_count", "retry_count"),
            ("error_message", "error"),
            ("consumer_service", "consumer"),
        ):
            if facts.get(key) is not None:
                detail[name] = facts[key]
        record["events"] = [detail]
    return record


def merge(old: LogRecord, new: LogRecord) -> LogRecord:
    """Two records of one message as one, by the rules orch_bus_log_rows applies."""
    out = dict(old)
    if new.get("status_at") is not None and (
        old.get("status_at") is None or new["status_at"] >= old["status_at"]
    ):
        out["status"], out["status_at"] = new["status"], new["status_at"]
    for key in _FIRST_WINS:
        if out.get(key) is None:
            out[key] = new.get(key)
    for key in _LAST_WINS:
        if new.get(key) is not None:
            out[key] = new[key]
    if not out.get("headers"):
        out["headers"] = new.get("headers")
    for key in ("retry_count", "delivered_at"):
        values = [v for v in (old.get(key), new.get(key)) if v is not None]
        out[key] = max(values) if values else None
    produced = [v for v in (old.get("produced_at"), new.get("produced_at")) if v is not None]
    out["produced_at"] = min(produced) if produced else None
    events = [*(old.get("events") or []), *(new.get("events") or [])]
    if events:
        out["events"] = events
    return out


def columns(records: list[LogRecord]) -> list[list[Any]]:
    """Records as orch_bus_log_rows's arrays (JSON values as text; a str is JSON already)."""
    arrays: list[list[Any]] = []
    for name in COLUMNS:
        values = [r.get(name) for r in records]
        if name in ("message_payload", "headers", "events"):
            values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
        arrays.append(values)
    return arrays


class MessageLogWriter:
    """Merges events per message in memory and writes them in batches."""

    def __init__(self, db: Database, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._db = db
        #: This writer's counters row (bus_queue_counters.writer).
        self.writer = uuid.uuid4().hex
        self._flush_seconds = flush_seconds
        self._pending: dict[tuple[str, str], LogRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self.dropped = 0

    def record(self, records: list[LogRecord]) -> None:
        for rec in records:
            self.record_one(rec)

    def record_one(self, rec: LogRecord) -> None:
        key = (rec["queue_name"], rec["message_id"])
        old = self._pending.pop(key, None)
        self._pending[key] = merge(old, rec) if old is not None else rec
        if len(self._pending) > MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
            self.dropped += 1
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="orch-bus-log-writer")

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write everything recorded so far (tests and readers of the log call this)."""
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending, {}
                try:
                    rows = [batch[key] for key in sorted(batch)]
                    for start in range(0, len(rows), BATCH_ROWS):
                        chunk = rows[start : start + BATCH_ROWS]
                        await self._db.execute(Q.log_rows, self.writer, *columns(chunk))
                        for rec in chunk:
                            del batch[(rec["queue_name"], rec["message_id"])]
                except BaseException:
                    self._restore(batch)
                    raise

    def _restore(self, batch: dict[tuple[str, str], LogRecord]) -> None:
        """Put back what a failed flush did not write, before anything recorded since."""
        for key, rec in self._pending.items():
            batch[key] = merge(batch[key], rec) if key in batch else rec
        self._pending = batch

    async def _run(self) -> None:
        """Flush every interval for as long as the bus lives; an error waits and retries."""
        while True:
            await asyncio.sleep(self._flush_seconds)
            if not self._pending:
                continue
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("message log flush failed (%s); retrying", exc)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending:
            try:
                await asyncio.wait_for(self.flush(), timeout=5)
            except Exception as exc:
                log.warning("message log: %d events not written at close (%s)", self.pending, exc)

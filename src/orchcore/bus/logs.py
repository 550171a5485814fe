"""message_logs: each message's lifecycle, written in batches off the hot path.

Why batches. A raw PGMQ client costs one statement per send, per read and per delete,
and the benchmark holds orch to within 15% of that. Writing a message_logs row in the
statement of each send, receive and ack would double the rows PostgreSQL writes per
message and add a round trip's worth of work to each. Instead:

- the send, the receive and the ack stay one statement each, the same PGMQ call a raw
  client makes (the ack returns what the log needs: read count, enqueue and read times);
- their events (produced, delivered, acked, failed) are merged in memory per
  (queue, message) and written every ``FLUSH_SECONDS`` in one statement for the batch
  (orch_bus_log_events). A message produced, delivered and acked between two flushes in
  one process costs one log row written once, not three writes;
- the rare events an operator acts on (dead_lettered, expired, redriven, purged) are
  written by the database functions that move the message, in its transaction: they
  are never lost and never ahead of the message.

The price: a process killed hard loses up to ``FLUSH_SECONDS`` of its hot-path log
events. The messages themselves are never at risk (PGMQ holds them); what is lost is
history, the trade the tracing buffer makes too. A send inside a caller's transaction
(the saga outbox) logs in that transaction instead, so a rolled-back step leaves no
'produced' row behind.

Rows are written in (queue, message) order, so two processes flushing overlapping rows
(the producer's 'produced', the consumer's 'acked') cannot deadlock; a failed flush keeps
its events and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from typing import Any

from orchcore.bus.models import MessageEvent
from orchcore.db import Connection, Database, Queries

log = logging.getLogger("orch.bus")
Q = Queries("orchcore.bus")

FLUSH_SECONDS = 0.2
#: A flush writes at most this many rows per statement.
BATCH_ROWS = 2000
#: Events kept while the database cannot be written; beyond it the oldest are dropped.
MAX_PENDING = 200_000

LogRecord = dict[str, Any]

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
    """One lifecycle event as orch_bus_log_events takes it; ``facts`` are its columns."""
    detail = {"event": event.value, "at": at}
    for key in ("retry_count", "error_message", "processing_time_ms", "consumer_service"):
        if facts.get(key) is not None:
            detail[key] = facts[key]
    return {
        "queue_name": queue_name,
        "message_id": str(message_id),
        "status": event.value,
        "status_at": at,
        **facts,
        "events": [detail],
    }


def merge(old: LogRecord, new: LogRecord) -> LogRecord:
    """Two records of one message as one, by the rules orch_bus_log_events applies."""
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
    out["events"] = [*old.get("events", []), *new.get("events", [])]
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_records(records: list[LogRecord]) -> str:
    return json.dumps(records, default=_json_default, separators=(",", ":"))


async def write_now(conn: Connection, records: list[LogRecord]) -> None:
    """Write records in the caller's transaction (the outbox path)."""
    if records:
        records = sorted(records, key=lambda r: (r["queue_name"], r["message_id"]))
        await conn.execute(Q.log_events, dumps_records(records))


class MessageLogWriter:
    """Merges events per message in memory and writes them in batches."""

    def __init__(self, db: Database, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._flush_seconds = flush_seconds
        self._pending: dict[tuple[str, str], LogRecord] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self.dropped = 0

    def record(self, records: list[LogRecord]) -> None:
        for rec in records:
            key = (rec["queue_name"], rec["message_id"])
            old = self._pending.pop(key, None)
            self._pending[key] = merge(old, rec) if old is not None else rec
        while len(self._pending) > MAX_PENDING:
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
                        await self._db.execute(Q.log_events, dumps_records(chunk))
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

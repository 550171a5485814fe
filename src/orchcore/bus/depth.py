"""What an operator watches of the bus: depth, rates, history, and retention.

Depth is read from PGMQ's tables as they are (ready, in flight, delayed, dead letters,
ages). Rates need two points in time: the daemons sample every queue each few seconds
into bus_depth_samples (any console then shows the same history), and a rate is the
difference between now and the oldest sample of the last minute: messages in from
PGMQ's msg_id sequence (every send, by orch or by a foreign client), messages out from
orch's ack counter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchcore.bus.envelope import LAST_ERROR, LAST_ERROR_DELIVERY, open_envelope, string_headers
from orchcore.bus.models import (
    DepthSample,
    GetQueueMessagesResponse,
    MessageEvent,
    QueueMessage,
    QueueMetrics,
)
from orchcore.bus.registry import QueueRegistry
from orchcore.clock import Clock
from orchcore.db import Database, Queries

Q = Queries("orchcore.bus")

#: Rows removed per statement by retention.
RETENTION_BATCH = 1000
#: How long depth samples are kept (the console charts the last 15 minutes).
SAMPLE_RETENTION = timedelta(hours=24)


def _per_minute(
    now_total: int, base_total: int | None, base_at: datetime | None, now: datetime
) -> float:
    if base_total is None or base_at is None:
        return 0.0
    elapsed = (now - base_at).total_seconds()
    if elapsed < 1.0:
        return 0.0
    return max(now_total - base_total, 0) * 60.0 / elapsed


def metrics_from_row(row: Any, now: datetime) -> QueueMetrics:
    return QueueMetrics(
        total_messages=row["total"],
        pending_messages=row["ready"],
        processing_messages=row["in_flight"],
        delayed_messages=row["delayed"],
        failed_messages=row["dead_letters"],
        average_age_seconds=row["average_age_seconds"] or 0.0,
        oldest_age_seconds=row["oldest_age_seconds"],
        messages_in_per_minute=_per_minute(
            row["sent_total"], row["base_sent_total"], row["base_sampled_at"], now
        ),
        messages_out_per_minute=_per_minute(
            row["acked_total"], row["base_acked_total"], row["base_sampled_at"], now
        ),
    )


def message_from_row(row: Any) -> QueueMessage:
    return QueueMessage(
        id=str(row["id"]),
        message_id=row["message_id"],
        correlation_id=row["correlation_id"],
        producer_service=row["producer_service"],
        consumer_service=row["consumer_service"],
        message_type=row["message_type"],
        message_size_bytes=row["message_size_bytes"] or 0,
        status=row["status"],
        retry_count=row["retry_count"] or 0,
        processing_time_ms=row["processing_time_ms"],
        error_message=row["error_message"],
        produced_at=row["produced_at"],
        consumed_at=row["consumed_at"],
        headers=string_headers(row["headers"]),
    )


def live_message(queue_name: str, row: Any) -> QueueMessage:
    """A message still in its queue: 'delivered' while a consumer holds it, 'failed'
    while it waits out a nack's delay, else 'produced' (waiting to be delivered)."""
    env = open_envelope(row["message"])
    headers = string_headers(row["headers"])
    status = MessageEvent.PRODUCED
    if row["read_ct"] > 0 and row["invisible"]:
        status = MessageEvent.DELIVERED
        if headers.get(LAST_ERROR_DELIVERY) == str(row["read_ct"]):
            status = MessageEvent.FAILED
    return QueueMessage(
        id=f"{queue_name}:{row['msg_id']}",
        message_id=str(row["msg_id"]),
        correlation_id=env.correlation_id,
        producer_service=env.producer or "unknown",
        consumer_service=None,
        message_type=env.message_type,
        message_size_bytes=row["size_bytes"] or 0,
        status=status.value,
        retry_count=max(row["read_ct"] - 1, 0),
        processing_time_ms=None,
        error_message=headers.get(LAST_ERROR),
        produced_at=row["enqueued_at"],
        consumed_at=None,
        headers=headers,
    )


class QueueDepths:
    def __init__(self, db: Database, clock: Clock, registry: QueueRegistry) -> None:
        self._db = db
        self._clock = clock
        self._registry = registry

    async def metrics(self, queue_name: str) -> QueueMetrics:
        await self._registry.config(queue_name)  # NotFoundError for an unknown queue
        now = self._clock.now()
        row = await self._db.fetchrow(Q.queue_depths, now, queue_name)
        if row is None:  # a topic: nothing of its own
            return QueueMetrics(
                total_messages=0,
                pending_messages=0,
                processing_messages=0,
                failed_messages=0,
                average_age_seconds=0.0,
            )
        return metrics_from_row(row, now)

    async def all_metrics(self) -> dict[str, QueueMetrics]:
        """Every active queue (not topics: they hold nothing), in one round trip."""
        now = self._clock.now()
        rows = await self._db.fetch(Q.queue_depths, now, None)
        return {row["queue_name"]: metrics_from_row(row, now) for row in rows}

    async def queue_messages(
        self, queue_name: str, *, limit: int = 100
    ) -> GetQueueMessagesResponse:
        """The newest messages, live ones (from PGMQ) and finished ones (from the log)."""
        metrics = await self.metrics(queue_name)
        live = await self._db.fetch(Q.peek, queue_name, limit, True)
        logged = await self._db.fetch(Q.recent_messages, queue_name, limit)
        messages = {m.message_id: m for m in map(message_from_row, logged)}
        for row in live:  # a live message's PGMQ row is newer than any log row of it
            messages[str(row["msg_id"])] = live_message(queue_name, row)
        newest = sorted(
            messages.values(), key=lambda m: (m.produced_at, int(m.message_id)), reverse=True
        )
        return GetQueueMessagesResponse(messages=newest[:limit], queue_metrics=metrics)

    async def sample(self, *, min_interval_seconds: float = 1.0) -> int:
        """One depth sample per active queue; skipped for a queue another daemon sampled
        within ``min_interval_seconds``. Returns the samples written."""
        status = await self._db.execute(
            Q.insert_depth_samples, self._clock.now(), min_interval_seconds
        )
        return int(status.split()[-1])

    async def depth_history(self, queue_name: str, *, since: datetime) -> list[DepthSample]:
        rows = await self._db.fetch(Q.depth_history, queue_name, since)
        if not rows:
            await self._registry.config(queue_name)  # unknown queue: say so
        return [DepthSample.model_validate(dict(row)) for row in rows]

    async def enforce_retention(self) -> int:
        """Expired messages out of their queues, then archived messages and logs older
        than each queue's retention_hours, and old depth samples: in batches, each its
        own statement, so no lock is held long. Returns the rows removed."""
        removed = 0
        for target in await self._db.fetch(Q.retention_targets):
            name, hours = target["queue_name"], target["retention_hours"]
            if target["queue_type"] != "topic":
                removed += await self._drain(Q.expire_due, name, RETENTION_BATCH)
                removed += await self._drain(Q.trim_archive, name, hours, RETENTION_BATCH)
            removed += await self._drain_status(Q.trim_message_logs, name, hours, RETENTION_BATCH)
        before = self._clock.now() - SAMPLE_RETENTION
        removed += await self._drain_status(Q.trim_depth_samples, before, RETENTION_BATCH)
        return removed

    async def _drain(self, query: str, *args: Any) -> int:
        total = 0
        while True:
            count: int = await self._db.fetchval(query, *args) or 0
            total += count
            if count < RETENTION_BATCH:
                return total

    async def _drain_status(self, query: str, *args: Any) -> int:
        total = 0
        while True:
            count = int((await self._db.execute(query, *args)).split()[-1])
            total += count
            if count < RETENTION_BATCH:
                return total

"""The queue registry (the seed's message_queues) and each PGMQ queue behind it.

A queue row and its PGMQ queue (with ``<name>_dlq`` and its topic binding) are made in
one transaction. Every send and receive needs the queue's settings, so each process
caches them; the table's trigger NOTIFYs every change and the cache drops that entry
(and everything after the listener reconnects). Without a listener nothing is cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from orchcore.audit import record_action
from orchcore.bus.models import (
    DLQ_SUFFIX,
    CreateMessageQueueRequest,
    MessageQueue,
    QueueType,
    UpdateMessageQueueRequest,
)
from orchcore.bus.wakeups import NOTIFY_THROTTLE_MS
from orchcore.clock import Clock
from orchcore.db import Connection, Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import ConflictError, NotFoundError, ValidationFailed
from orchcore.validation import parse

Q = Queries("orchcore.bus")

#: PGMQ's rule for routing keys (pgmq.validate_routing_key): what a topic's message type is.
_ROUTING_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """PGMQ's compiled form of a topic pattern: ``*`` one segment, ``#`` any run."""
    escaped = re.sub(r"([.+?{}()|\[\]\\^$])", r"\\\1", pattern)
    return re.compile("^" + escaped.replace("*", "[^.]+").replace("#", ".*") + "$")


@dataclass(frozen=True)
class QueueConfig:
    """What the send and receive paths need of a queue."""

    name: str
    queue_type: QueueType
    message_pattern: str | None
    producers: frozenset[str]
    consumers: frozenset[str]
    max_message_size: int
    dlq_enabled: bool
    dlq_max_retries: int
    is_active: bool

    @property
    def dlq(self) -> str | None:
        return self.name + DLQ_SUFFIX if self.dlq_enabled else None

    @property
    def max_deliveries(self) -> int:
        """Deliveries allowed before a message is buried: the first and its retries."""
        return 1 + self.dlq_max_retries

    def accepts_type(self, message_type: str) -> bool:
        """A topic with a pattern takes only the message types that match it."""
        return self.message_pattern is None or bool(
            pattern_regex(self.message_pattern).match(message_type)
        )


def check_routing_key(message_type: str) -> None:
    if len(message_type) > 255 or not _ROUTING_KEY.match(message_type):
        raise ValidationFailed(
            "message_type",
            "a topic's message type is a PGMQ routing key: letters, digits, '_' and '-' "
            "in dot-separated segments",
        )


def queue_from_row(row: asyncpg.Record) -> MessageQueue:
    data = dict(row)
    data["id"] = str(data["id"])
    data["monitoring_config"] = data.get("monitoring_config") or {}
    data["dead_letter_queue"] = data["queue_name"] + DLQ_SUFFIX if data["dlq_enabled"] else None
    return MessageQueue.model_validate(data)


def config_from_row(row: asyncpg.Record) -> QueueConfig:
    return QueueConfig(
        name=row["queue_name"],
        queue_type=QueueType(row["queue_type"]),
        message_pattern=row["message_pattern"],
        producers=frozenset(row["producer_services"] or ()),
        consumers=frozenset(row["consumer_services"] or ()),
        max_message_size=row["max_message_size"],
        dlq_enabled=row["dlq_enabled"],
        dlq_max_retries=row["dlq_max_retries"],
        is_active=row["is_active"],
    )


class QueueRegistry:
    def __init__(self, db: Database, clock: Clock, listener: NotificationListener | None) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[str, QueueConfig] | None = None
        self._generation = 0
        if listener is not None:
            self._cache = {}
            listener.subscribe(self._on_notification)
            listener.on_reconnect(self._forget_all)

    # -- the cache ------------------------------------------------------------------------

    def _on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") == "message_queue":
            self._forget(str(message.get("queue_name")))

    def _forget(self, name: str) -> None:
        self._generation += 1
        if self._cache is not None:
            self._cache.pop(name, None)

    def _forget_all(self) -> None:
        self._generation += 1
        if self._cache is not None:
            self._cache.clear()

    async def config(self, name: str) -> QueueConfig:
        """The queue's settings (NotFoundError for an unknown queue)."""
        if self._cache is not None:
            cached = self._cache.get(name)
            if cached is not None:
                return cached
        generation = self._generation
        row = await self._db.fetchrow(Q.queue_by_name, name)
        if row is None:
            raise NotFoundError("queue", name)
        config = config_from_row(row)
        # A change notified while we read may be newer than what we read: do not keep it.
        if self._cache is not None and generation == self._generation:
            self._cache[name] = config
        return config

    # -- reads ------------------------------------------------------------------------------

    async def get(self, name: str) -> MessageQueue:
        row = await self._db.fetchrow(Q.queue_by_name, name)
        if row is None:
            raise NotFoundError("queue", name)
        return queue_from_row(row)

    async def list(self, *, include_inactive: bool = False) -> list[MessageQueue]:
        return [queue_from_row(r) for r in await self._db.fetch(Q.list_queues, include_inactive)]

    # -- writes -----------------------------------------------------------------------------

    async def create(
        self, request: CreateMessageQueueRequest | dict[str, Any], *, actor: str
    ) -> MessageQueue:
        req = parse(CreateMessageQueueRequest, request)
        if req.queue_name.endswith(DLQ_SUFFIX):
            raise ValidationFailed(
                "queue_name", f"names ending in {DLQ_SUFFIX!r} are kept for dead-letter queues"
            )
        has_storage = req.queue_type is not QueueType.TOPIC
        # A topic has no messages of its own; a dead-letter queue has no dead letters.
        dlq_enabled = req.dlq_enabled and req.queue_type is QueueType.QUEUE
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if req.message_pattern is not None:
                await _validate_pattern(conn, req.message_pattern)
            row = await conn.fetchrow(
                Q.insert_queue,
                req.queue_name,
                req.queue_type.value,
                req.message_pattern,
                req.producer_services,
                req.consumer_services,
                req.retention_hours,
                req.max_message_size,
                dlq_enabled,
                req.dlq_max_retries,
                req.monitoring_config.model_dump(),
                req.push_endpoint,
                req.visibility_timeout_seconds,
                actor,
                now,
            )
            if row is None:
                existing = await conn.fetchrow(Q.queue_by_name, req.queue_name)
                state = "" if existing is None or existing["is_active"] else " (inactive)"
                raise ConflictError(f"queue {req.queue_name!r} already exists{state}")
            if has_storage:
                await conn.execute(Q.create_pgmq_queue, req.queue_name)
                await conn.execute(Q.enable_queue_notify, req.queue_name, NOTIFY_THROTTLE_MS)
                if dlq_enabled:
                    await conn.execute(Q.create_pgmq_queue, req.queue_name + DLQ_SUFFIX)
                if req.message_pattern is not None:
                    await conn.execute(Q.bind_pattern, req.message_pattern, req.queue_name)
            await record_action(
                conn,
                actor=actor,
                action="queue.create",
                target_kind="message_queue",
                target_id=req.queue_name,
                at=now,
                details={"queue_type": req.queue_type.value, "dlq_enabled": dlq_enabled},
            )
        self._forget(req.queue_name)
        return queue_from_row(row)

    async def update(
        self, name: str, request: UpdateMessageQueueRequest | dict[str, Any], *, actor: str
    ) -> MessageQueue:
        req = parse(UpdateMessageQueueRequest, request)
        given = req.model_fields_set
        now = self._clock.now()
        async with self._db.transaction() as conn:
            current = await conn.fetchrow(Q.queue_by_name_for_update, name)
            if current is None:
                raise NotFoundError("queue", name)
            merged = dict(current)
            for field in given:
                value = getattr(req, field)
                if field == "monitoring_config" and value is not None:
                    value = value.model_dump()
                if value is None and field not in ("message_pattern", "push_endpoint"):
                    continue  # only these two can be cleared
                merged[field] = value
            old_pattern, new_pattern = current["message_pattern"], merged["message_pattern"]
            if new_pattern != old_pattern:
                if new_pattern is not None:
                    await _validate_pattern(conn, new_pattern)
                await self._rebind(conn, current, old_pattern, new_pattern)
            row = await conn.fetchrow(
                Q.update_queue,
                name,
                merged["message_pattern"],
                merged["producer_services"],
                merged["consumer_services"],
                merged["retention_hours"],
                merged["max_message_size"],
                merged["dlq_max_retries"],
                merged["monitoring_config"],
                merged["push_endpoint"],
                merged["visibility_timeout_seconds"],
                now,
            )
            assert row is not None  # locked above
            await record_action(
                conn,
                actor=actor,
                action="queue.update",
                target_kind="message_queue",
                target_id=name,
                at=now,
                details={"changed": sorted(given)},
            )
        self._forget(name)
        return queue_from_row(row)

    async def _rebind(
        self, conn: Connection, row: asyncpg.Record, old: str | None, new: str | None
    ) -> None:
        if row["queue_type"] == QueueType.TOPIC.value or not row["is_active"]:
            return  # a topic's pattern filters what it takes; an inactive queue is unbound
        if old is not None:
            await conn.execute(Q.unbind_pattern, old, row["queue_name"])
        if new is not None:
            await conn.execute(Q.bind_pattern, new, row["queue_name"])

    async def set_active(self, name: str, active: bool, *, actor: str, reason: str) -> MessageQueue:
        """Deactivate (sends refused, topic binding dropped, messages kept) or reactivate."""
        if not reason.strip():
            raise ValidationFailed("reason", "say why")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(Q.set_queue_active, name, active, now)
            if row is None:
                current = await conn.fetchrow(Q.queue_by_name, name)
                if current is None:
                    raise NotFoundError("queue", name)
                state = "active" if active else "inactive"
                raise ConflictError(f"queue {name!r} is already {state}")
            pattern = row["message_pattern"]
            if pattern is not None and row["queue_type"] != QueueType.TOPIC.value:
                query = Q.bind_pattern if active else Q.unbind_pattern
                await conn.execute(query, pattern, name)
            await record_action(
                conn,
                actor=actor,
                action="queue.activate" if active else "queue.deactivate",
                target_kind="message_queue",
                target_id=name,
                at=now,
                reason=reason,
            )
        self._forget(name)
        return queue_from_row(row)


async def _validate_pattern(conn: Connection, pattern: str) -> None:
    """PGMQ's own check of a routing pattern, its message as the reason."""
    try:
        async with conn.transaction():
            await conn.execute(Q.validate_pattern, pattern)
    except asyncpg.RaiseError as exc:
        raise ValidationFailed("message_pattern", str(exc)) from None

"""MessageBus: queues, topics, at-least-once delivery and dead letters, on PGMQ.

The hot path is the statement a raw PGMQ client's call runs, plus what orch checks in
memory (the queue's cached settings, the producer or consumer, the size): a send is
PGMQ's INSERT, a receive PGMQ's read (and, only when it found a message past its TTL or
its delivery limit, orch_bus_set_aside), an ack PGMQ's DELETE, each prepared once per
connection (:mod:`orchcore.bus.direct` says why). Only the ack (and a nack) leaves a
record for the batched log writer (see :mod:`orchcore.bus.logs` for why).

Delivery times are the database's: PGMQ's visibility timeouts run on its clock, so a
long poll waits in real time (asyncio), not on the engine's clock. Registry rows, audit
entries and depth samples use the engine's clock like the rest of orch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from orchcore.bus import direct, envelope
from orchcore.bus.dead_letters import DeadLetters
from orchcore.bus.deliveries import Deliveries, Delivery
from orchcore.bus.depth import QueueDepths
from orchcore.bus.leases import LeasedConnections
from orchcore.bus.logs import LogRecord, MessageLogWriter, event_record
from orchcore.bus.models import (
    CreateMessageQueueRequest,
    DeadLetter,
    DeadLetterActionResponse,
    DepthSample,
    ExtendRequest,
    GetQueueMessagesResponse,
    MessageEvent,
    MessageQueue,
    NackRequest,
    PurgeRequest,
    QueueMetrics,
    QueueType,
    ReceivedMessage,
    ReceiveRequest,
    ReceiveResponse,
    RedriveRequest,
    SendMessageRequest,
    SendMessageResponse,
    UpdateMessageQueueRequest,
)
from orchcore.bus.registry import QueueConfig, QueueRegistry, check_routing_key
from orchcore.bus.wakeups import QueueWakeups
from orchcore.clock import Clock
from orchcore.db import Connection, Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailed,
    validation_failed_from,
)
from orchcore.validation import parse

Q = Queries("orchcore.bus")

#: The consumer named in logs when an operator (no service token) receives.
OPERATOR = "operator"


@dataclass(frozen=True)
class PreparedSend:
    """Sends checked against their queue and encoded, ready for one statement.

    The saga outbox prepares before its transaction and sends inside it
    (:meth:`MessageBus.send_prepared`), so the event commits with the step."""

    queue: QueueConfig
    messages: list[envelope.EncodedMessage]
    producer: str | None
    actor: str


#: PGMQ's msg_id is a bigint.
_MAX_MESSAGE_ID = 2**63 - 1


def message_id_of(message_id: str) -> int:
    # isascii: str.isdigit admits "²" and other digits int() refuses
    if not (message_id.isascii() and message_id.isdigit()) or int(message_id) > _MAX_MESSAGE_ID:
        raise ValidationFailed("message_id", "not a PGMQ message id (a bigint, digits only)")
    return int(message_id)


class MessageBus:
    def __init__(
        self, db: Database, clock: Clock, listener: NotificationListener | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self.registry = QueueRegistry(db, clock, listener)
        self.logs = MessageLogWriter(db)
        self.wakeups = QueueWakeups(db.dsn)
        self._hot = LeasedConnections(db)
        self._dead = DeadLetters(db, clock, self.registry)
        self._depths = QueueDepths(db, clock, self.registry)
        self._deliveries = Deliveries()

    async def close(self) -> None:
        await self.wakeups.close()
        await self.logs.close()
        await self._hot.close()

    # -- queues ---------------------------------------------------------------------------

    async def create_queue(
        self, request: CreateMessageQueueRequest | dict[str, Any], *, actor: str
    ) -> MessageQueue:
        return await self.registry.create(request, actor=actor)

    async def update_queue(
        self, name: str, request: UpdateMessageQueueRequest | dict[str, Any], *, actor: str
    ) -> MessageQueue:
        return await self.registry.update(name, request, actor=actor)

    async def deactivate_queue(self, name: str, *, actor: str, reason: str) -> MessageQueue:
        return await self.registry.set_active(name, False, actor=actor, reason=reason)

    async def reactivate_queue(self, name: str, *, actor: str, reason: str) -> MessageQueue:
        return await self.registry.set_active(name, True, actor=actor, reason=reason)

    async def list_queues(self, *, include_inactive: bool = False) -> list[MessageQueue]:
        return await self.registry.list(include_inactive=include_inactive)

    async def get_queue(self, name: str) -> MessageQueue:
        return await self.registry.get(name)

    # -- sending --------------------------------------------------------------------------

    async def send(
        self, request: SendMessageRequest | dict[str, Any], *, producer: str | None, actor: str
    ) -> SendMessageResponse:
        req = parse(SendMessageRequest, request)
        prepared = await self.prepare_send(req.queue_name, [req], producer=producer, actor=actor)
        return (await self._send(self._hot, prepared))[0]

    async def send_batch(
        self,
        queue_name: str,
        messages: list[SendMessageRequest | dict[str, Any]],
        *,
        producer: str | None,
        actor: str,
    ) -> list[SendMessageResponse]:
        """All or nothing: one refused message refuses the batch."""
        if not messages:
            return []
        prepared = await self.prepare_send(queue_name, messages, producer=producer, actor=actor)
        if _statements(prepared) == 1:  # one statement is all or nothing by itself
            return await self._send(self._hot, prepared)
        async with self._db.transaction() as conn:
            return await self._send(conn, prepared)

    async def prepare_send(
        self,
        queue_name: str,
        messages: list[SendMessageRequest | dict[str, Any]],
        *,
        producer: str | None,
        actor: str,
    ) -> PreparedSend:
        """Check and encode sends to one queue (or topic); raise what refuses them."""
        requests = _requests_to(queue_name, messages)
        queue = await self.registry.config(queue_name)
        if not queue.is_active:
            raise ConflictError(f"queue {queue_name!r} is inactive: it takes no messages")
        if producer is not None and producer not in queue.producers:
            raise PermissionDeniedError(
                f"service {producer!r} is not a producer of queue {queue_name!r}"
            )
        encoded = []
        for req in requests:
            if queue.queue_type is QueueType.TOPIC:
                check_routing_key(req.message_type)
                if not queue.accepts_type(req.message_type):
                    raise ValidationFailed(
                        "message_type",
                        f"topic {queue_name!r} takes {queue.message_pattern!r} only",
                    )
            encoded.append(
                envelope.encode(
                    req, queue_name=queue_name, producer=producer, max_size=queue.max_message_size
                )
            )
        return PreparedSend(queue, encoded, producer, actor)

    async def send_prepared(
        self, conn: Connection, prepared: PreparedSend
    ) -> list[SendMessageResponse]:
        """Send in the caller's transaction: the messages exist if and only if it commits."""
        return await self._send(conn, prepared)

    async def _send(
        self, conn: Connection | LeasedConnections, prepared: PreparedSend
    ) -> list[SendMessageResponse]:
        queue = prepared.queue
        if queue.queue_type is QueueType.TOPIC:
            return await _send_to_topic(conn, prepared)
        if len(prepared.messages) > 1:
            return await _send_batch(conn, queue.name, prepared)
        msg = prepared.messages[0]
        msg_id = await conn.fetchval(
            direct.statements(queue.name).send, msg.message, msg.headers, msg.ttl_seconds,
            msg.delay_seconds,
        )  # fmt: skip
        return [_response(queue.name, msg_id, msg)]

    # -- pulling --------------------------------------------------------------------------

    async def receive(
        self, queue_name: str, request: ReceiveRequest | dict[str, Any], *, consumer: str | None
    ) -> ReceiveResponse:
        req = parse(ReceiveRequest, request)
        queue = await self._consumable(queue_name, consumer)
        rows = await self._read(queue, req, consumer)
        if not rows and req.wait_seconds > 0:
            rows = await self._wait_and_read(queue, req, consumer)
        return ReceiveResponse(messages=[self._hand_out(queue.name, row) for row in rows])

    def _hand_out(self, queue_name: str, row: Any) -> ReceivedMessage:
        opened = envelope.open_envelope(row["message"])
        headers = envelope.string_headers(row["headers"])
        self._deliveries.remember(queue_name, row["msg_id"], Delivery.of_row(row, opened, headers))
        return envelope.received(row, opened, headers)

    async def _read(
        self, queue: QueueConfig, req: ReceiveRequest, consumer: str | None
    ) -> list[Any]:
        """PGMQ's read, oldest first; what is past its TTL or its delivery limit is set
        aside in a second statement (rare) and the read goes on for as many more."""
        read = direct.statements(queue.name).read
        wanted = req.max_messages
        delivered: list[Any] = []
        while wanted > 0:
            rows = await self._hot.fetch(read, wanted, req.visibility_timeout_seconds)
            maybe_due = [
                row["msg_id"]
                for row in rows
                if direct.maybe_due_for_setting_aside(row, queue.max_deliveries)
            ]
            set_aside = await self._set_aside(queue, maybe_due, consumer) if maybe_due else set()
            kept = [row for row in rows if row["msg_id"] not in set_aside]
            delivered.extend(kept)
            wanted -= len(kept)
            if not set_aside:
                break
        delivered.sort(key=lambda row: row["msg_id"])
        return delivered

    async def _set_aside(
        self, queue: QueueConfig, msg_ids: list[int], consumer: str | None
    ) -> set[int]:
        rows = await self._hot.fetch(
            Q.set_aside, queue.name, msg_ids, queue.max_deliveries, queue.dlq, consumer or OPERATOR
        )
        return {row["msg_id"] for row in rows}

    async def _wait_and_read(
        self, queue: QueueConfig, req: ReceiveRequest, consumer: str | None
    ) -> list[Any]:
        """Long poll: read again on each insert notification, each visibility timeout
        that runs out, and at the latest every safety_seconds, until the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.wait_seconds
        while True:
            signal = await self.wakeups.signal(queue.name)
            ticket = signal.ticket()  # before the read: an insert after it wakes us
            rows = await self._read(queue, req, consumer)
            remaining = deadline - loop.time()
            if rows or remaining <= 0:
                return rows
            next_visible = await self._hot.fetchval(Q.next_visible_in, queue.name)
            timeout = min(remaining, self.wakeups.safety_seconds)
            if next_visible is not None:
                timeout = min(timeout, max(next_visible, 0.0) + 0.005)
            await signal.wait(ticket, timeout)

    async def _consumable(self, queue_name: str, consumer: str | None) -> QueueConfig:
        queue = await self.registry.config(queue_name)
        if consumer is not None and consumer not in queue.consumers:
            raise PermissionDeniedError(
                f"service {consumer!r} is not a consumer of queue {queue_name!r}"
            )
        if queue.queue_type is QueueType.TOPIC:
            raise ConflictError(
                f"{queue_name!r} is a topic: consume from the queues bound to its messages"
            )
        return queue

    async def ack(self, queue_name: str, message_id: str, *, consumer: str | None) -> None:
        msg_id = message_id_of(message_id)
        queue = await self._consumable(queue_name, consumer)
        delivery = self._deliveries.take_one(queue.name, msg_id)
        if delivery is None:  # not handed out here: the statement that reads its facts
            await self.ack_batch(queue_name, [message_id], consumer=consumer)
            return
        row = await self._hot.fetchrow(direct.statements(queue.name).ack_one, msg_id)
        if row is None:
            raise NotFoundError("message", f"{queue_name}/{message_id}")
        self.logs.record_one(_ack_record(queue.name, row, delivery, consumer or OPERATOR))

    async def ack_batch(
        self, queue_name: str, message_ids: list[str], *, consumer: str | None
    ) -> list[str]:
        """Ack several messages in one statement; returns the ids acked. A single unknown
        id is NotFoundError; in a batch, the ids not in the queue are left out."""
        ids = [message_id_of(m) for m in message_ids]
        queue = await self._consumable(queue_name, consumer)
        handed_out = self._deliveries.take(queue.name, ids)
        unknown = [msg_id for msg_id in ids if msg_id not in handed_out]
        deleted = (
            await self._hot.fetch(direct.statements(queue.name).ack_many, list(handed_out))
            if handed_out
            else []
        )
        rows = await self._hot.fetch(Q.ack, queue.name, unknown) if unknown else []
        if not rows and not deleted and len(ids) == 1:
            raise NotFoundError("message", f"{queue_name}/{message_ids[0]}")
        who = consumer or OPERATOR
        records = [
            _ack_record(queue.name, row, handed_out.get(row["msg_id"]) or Delivery.of_ack(row), who)
            for row in (*deleted, *rows)
        ]
        self.logs.record(records)
        return [str(row["msg_id"]) for row in (*deleted, *rows)]

    async def nack(
        self,
        queue_name: str,
        message_id: str,
        request: NackRequest | dict[str, Any],
        *,
        consumer: str | None,
    ) -> str:
        """Give a message back; returns 'retry', or 'dead_lettered' (or 'failed' without a
        dead-letter queue) when that was its last allowed delivery."""
        req = parse(NackRequest, request)
        msg_id = message_id_of(message_id)
        queue = await self._consumable(queue_name, consumer)
        self._deliveries.forget(queue.name, msg_id)  # this delivery is answered
        who = consumer or OPERATOR
        row = await self._hot.fetchrow(
            Q.nack, queue.name, msg_id, req.delay_seconds, req.error_message,
            queue.max_deliveries, queue.dlq, who,
        )  # fmt: skip
        if row is None:
            raise NotFoundError("message", f"{queue_name}/{message_id}")
        outcome: str = row["outcome"]
        if outcome == "retry":  # a burial is logged by the statement that buries
            self.logs.record(
                [
                    event_record(
                        queue.name, msg_id, MessageEvent.FAILED, row["at"],
                        consumer_service=who, retry_count=row["read_ct"] - 1,
                        error_message=req.error_message or "given back by the consumer",
                        produced_at=row["enqueued_at"], delivered_at=row["last_read_at"],
                        headers=envelope.string_headers(row["headers"]),
                        **_envelope_facts(row["message"]),
                    )
                ]
            )  # fmt: skip
        return outcome

    async def extend(
        self,
        queue_name: str,
        message_id: str,
        request: ExtendRequest | dict[str, Any],
        *,
        consumer: str | None,
    ) -> None:
        """Keep a message invisible for visibility_timeout_seconds more, from now."""
        req = parse(ExtendRequest, request)
        msg_id = message_id_of(message_id)
        queue = await self._consumable(queue_name, consumer)
        found = await self._hot.fetchval(
            Q.extend, queue.name, msg_id, req.visibility_timeout_seconds
        )
        if found is None:
            raise NotFoundError("message", f"{queue_name}/{message_id}")

    async def hand_back(
        self,
        queue_name: str,
        message_id: str,
        *,
        delay_seconds: int,
        reason: str,
        consumer: str | None,
    ) -> None:
        """Return a message whose delivery was never attempted (the consumer could not be
        called at all): visible again after delay_seconds, the read not counted. The
        reason goes on the message's log, so a late message says why it was late."""
        msg_id = message_id_of(message_id)
        queue = await self._consumable(queue_name, consumer)
        self._deliveries.forget(queue.name, msg_id)  # this delivery is answered
        row = await self._hot.fetchrow(Q.hand_back, queue.name, msg_id, max(delay_seconds, 0))
        if row is None:
            raise NotFoundError("message", f"{queue_name}/{message_id}")
        self.logs.record(
            [
                event_record(
                    queue.name, msg_id, MessageEvent.FAILED, row["at"],
                    consumer_service=consumer or OPERATOR, retry_count=row["read_ct"],
                    error_message=f"not delivered: {reason}"[:4000],
                    produced_at=row["enqueued_at"], delivered_at=row["last_read_at"],
                    headers=envelope.string_headers(row["headers"]),
                    **_envelope_facts(row["message"]),
                )
            ]
        )  # fmt: skip

    async def dead_letter(
        self, queue_name: str, message_id: str, *, error: str, consumer: str | None
    ) -> str | None:
        """Bury a message now, whatever its deliveries (a push answered 4xx: a retry
        cannot help). Returns its id in the dead-letter queue (None without one)."""
        msg_id = message_id_of(message_id)
        queue = await self._consumable(queue_name, consumer)
        self._deliveries.forget(queue.name, msg_id)  # this delivery is answered
        dead_id = await self._db.fetchval(
            Q.dead_letter_now, queue.name, msg_id, error, queue.dlq, consumer or OPERATOR
        )
        if dead_id is None:
            raise NotFoundError("message", f"{queue_name}/{message_id}")
        return str(dead_id) if dead_id else None

    # -- reading ----------------------------------------------------------------------------

    async def queue_messages(
        self, queue_name: str, *, limit: int = 100
    ) -> GetQueueMessagesResponse:
        await self.logs.flush()
        return await self._depths.queue_messages(queue_name, limit=limit)

    async def metrics(self, queue_name: str) -> QueueMetrics:
        return await self._depths.metrics(queue_name)

    async def all_metrics(self) -> dict[str, QueueMetrics]:
        return await self._depths.all_metrics()

    async def depth_history(self, queue_name: str, *, since: datetime) -> list[DepthSample]:
        return await self._depths.depth_history(queue_name, since=since)

    async def sample_depths(self, *, min_interval_seconds: float = 1.0) -> int:
        return await self._depths.sample(min_interval_seconds=min_interval_seconds)

    async def enforce_retention(self) -> int:
        await self.logs.flush()
        return await self._depths.enforce_retention()

    async def flush_logs(self) -> None:
        await self.logs.flush()

    # -- dead letters -----------------------------------------------------------------------

    async def dead_letters(self, queue_name: str, *, limit: int = 100) -> list[DeadLetter]:
        return await self._dead.list(queue_name, limit=limit)

    async def redrive(
        self, queue_name: str, request: RedriveRequest | dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        return await self._dead.redrive(queue_name, request, actor=actor)

    async def purge_dead_letters(
        self, queue_name: str, request: PurgeRequest | dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        return await self._dead.purge(queue_name, request, actor=actor)

    async def purge_queue(
        self, queue_name: str, *, actor: str, reason: str
    ) -> DeadLetterActionResponse:
        return await self._dead.purge_queue(queue_name, actor=actor, reason=reason)


# -- helpers of the send path -------------------------------------------------------------


#: One validation for a whole batch: per message, a third of what one call each costs.
_SEND_REQUESTS = TypeAdapter(list[SendMessageRequest])
_SEND_RESPONSES = TypeAdapter(list[SendMessageResponse])


def _requests_to(
    queue_name: str, messages: list[SendMessageRequest | dict[str, Any]]
) -> list[SendMessageRequest]:
    """The batch's messages validated, each to ``queue_name`` (a dict may leave it out)."""
    items = [
        {**m, "queue_name": queue_name} if isinstance(m, dict) and "queue_name" not in m else m
        for m in messages
    ]
    try:
        requests = _SEND_REQUESTS.validate_python(items)
    except ValidationError as exc:
        failed = validation_failed_from(exc)
        raise ValidationFailed(f"messages.{failed.field}", failed.reason) from None
    for index, req in enumerate(requests):
        if req.queue_name != queue_name:
            raise ValidationFailed(
                f"messages.{index}.queue_name", f"a batch goes to one queue ({queue_name!r})"
            )
    return requests


def _ack_record(queue_name: str, row: Any, delivery: Delivery, consumer: str) -> LogRecord:
    """An ack's record: the delete's time and size, and the delivery's facts (what the
    receive here kept, or what orch_bus_ack read back). One row holds produced,
    delivered and acked, so its columns say it all and it has no events list."""
    acked_at = row["acked_at"]
    processing = None
    if delivery.last_read_at is not None:
        processing = int((acked_at - delivery.last_read_at).total_seconds() * 1000)
    return {
        "queue_name": queue_name,
        "message_id": str(row["msg_id"]),
        "status": MessageEvent.ACKED.value,
        "status_at": acked_at,
        "consumer_service": consumer,
        "retry_count": max(delivery.read_ct - 1, 0),
        "consumed_at": acked_at,
        "processing_time_ms": processing,
        "produced_at": delivery.enqueued_at,
        "delivered_at": delivery.last_read_at,
        "message_type": delivery.message_type,
        "correlation_id": delivery.correlation_id,
        "producer_service": delivery.producer,
        "message_size_bytes": row["size_bytes"],
        "headers": delivery.headers or None,
    }


def _envelope_facts(message: Any) -> dict[str, Any]:
    env = envelope.open_envelope(message)
    return {
        "message_type": env.message_type,
        "correlation_id": env.correlation_id,
        "producer_service": env.producer,
    }


def _response(queue_name: str, msg_id: int, msg: envelope.EncodedMessage) -> SendMessageResponse:
    return SendMessageResponse(
        message_id=str(msg_id),
        queue_name=queue_name,
        status="delayed" if msg.delay_seconds else "queued",
    )


def _statements(prepared: PreparedSend) -> int:
    """How many statements a send takes: one per delay (and, to a topic, per type)."""
    if prepared.queue.queue_type is QueueType.TOPIC:
        return len({(m.message_type, m.delay_seconds) for m in prepared.messages})
    return len({m.delay_seconds for m in prepared.messages})


def _by_delay(
    messages: list[envelope.EncodedMessage],
) -> dict[int, list[tuple[int, envelope.EncodedMessage]]]:
    groups: dict[int, list[tuple[int, envelope.EncodedMessage]]] = {}
    for index, msg in enumerate(messages):
        groups.setdefault(msg.delay_seconds, []).append((index, msg))
    return groups


def _column_or_null(values: list[Any]) -> list[Any] | None:
    """A column of NULLs as one NULL (unnest pads it): no array of them to encode."""
    return values if any(v is not None for v in values) else None


async def _send_batch(
    conn: Connection | LeasedConnections, queue_name: str, prepared: PreparedSend
) -> list[SendMessageResponse]:
    responses: list[SendMessageResponse | None] = [None] * len(prepared.messages)
    send_batch = direct.statements(queue_name).send_batch
    for delay, group in _by_delay(prepared.messages).items():
        status = "delayed" if delay else "queued"
        rows = await conn.fetch(
            send_batch, [m.message for _, m in group],
            _column_or_null([m.headers for _, m in group]),
            _column_or_null([m.ttl_seconds for _, m in group]), delay,
        )  # fmt: skip
        answers = _SEND_RESPONSES.validate_python(
            [
                {"message_id": str(row["msg_id"]), "queue_name": queue_name, "status": status}
                for row in rows
            ]
        )
        for (index, _msg), answer in zip(group, answers, strict=True):
            responses[index] = answer
    return [r for r in responses if r is not None]


async def _send_to_topic(
    conn: Connection | LeasedConnections, prepared: PreparedSend
) -> list[SendMessageResponse]:
    """Each message to every queue bound with a pattern its type matches (PGMQ routes)."""
    groups: dict[tuple[str, int], list[tuple[int, envelope.EncodedMessage]]] = {}
    for index, msg in enumerate(prepared.messages):
        groups.setdefault((msg.message_type, msg.delay_seconds), []).append((index, msg))
    copies: list[dict[str, str]] = [{} for _ in prepared.messages]
    for (message_type, delay), group in groups.items():
        rows = await conn.fetch(
            Q.send_topic_batch, message_type, [m.message for _, m in group],
            [m.headers for _, m in group], [m.ttl_seconds for _, m in group], delay,
        )  # fmt: skip
        by_queue: dict[str, list[Any]] = {}
        for row in rows:
            by_queue.setdefault(row["queue_name"], []).append(row)
        for queue_name, queue_rows in by_queue.items():
            for (index, _msg), row in zip(group, queue_rows, strict=True):
                copies[index][queue_name] = str(row["msg_id"])
    responses = []
    for msg, fanned in zip(prepared.messages, copies, strict=True):
        first = sorted(fanned)[0] if fanned else None
        responses.append(
            SendMessageResponse(
                message_id=fanned[first] if first else "",
                queue_name=prepared.queue.name,
                status=("delayed" if msg.delay_seconds else "queued") if fanned else "failed",
                fanned_out_to=sorted(fanned),
                fanned_out_ids=fanned,
            )
        )
    return responses

"""Dead letters: inspect, redrive, purge; every change audited with who and why.

A redrive moves dead letters back in batches; each batch is one transaction that takes
the dead letters out of ``<name>_dlq``, sends them to the queue as new messages and
writes the audit row, so a redrive interrupted half way has moved (and audited) whole
batches only, and a dead letter is never both redriven and still dead.
"""

from __future__ import annotations

from typing import Any

from orchcore.audit import record_action
from orchcore.bus import envelope
from orchcore.bus.models import (
    DLQ_SUFFIX,
    DeadLetter,
    DeadLetterActionResponse,
    PurgeRequest,
    RedriveRequest,
)
from orchcore.bus.registry import QueueConfig, QueueRegistry
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import ConflictError, ValidationFailed
from orchcore.validation import parse

Q = Queries("orchcore.bus")

#: Dead letters moved per transaction by a redrive or purge of all.
BATCH = 500


class DeadLetters:
    def __init__(self, db: Database, clock: Clock, registry: QueueRegistry) -> None:
        self._db = db
        self._clock = clock
        self._registry = registry

    async def _with_dlq(self, queue_name: str) -> QueueConfig:
        queue = await self._registry.config(queue_name)
        if queue.dlq is None:
            raise ConflictError(f"queue {queue_name!r} has no dead-letter queue")
        return queue

    async def list(self, queue_name: str, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters first, read without changing them."""
        queue = await self._with_dlq(queue_name)
        rows = await self._db.fetch(Q.peek, queue.name + DLQ_SUFFIX, limit, False)
        return [envelope.dead_letter(row, queue_name=queue.name) for row in rows]

    async def redrive(
        self, queue_name: str, request: RedriveRequest | dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        req = parse(RedriveRequest, request)
        queue = await self._with_dlq(queue_name)
        ids = None if req.message_ids is None else _ids(req.message_ids)
        moved: dict[str, str] = {}
        while True:
            limit = BATCH if ids is None else max(len(ids), 1)
            now = self._clock.now()
            async with self._db.transaction() as conn:
                rows = await conn.fetch(Q.redrive, queue.name, ids, limit)
                batch = {str(r["dead_letter_id"]): str(r["message_id"]) for r in rows}
                await record_action(
                    conn,
                    actor=actor,
                    action="dead_letters.redrive",
                    target_kind="message_queue",
                    target_id=queue.name,
                    at=now,
                    reason=req.reason,
                    details={
                        "requested": req.message_ids if req.message_ids is not None else "all",
                        "redriven": batch,
                    },
                )
            moved.update(batch)
            if ids is not None or len(rows) < limit:
                break
        return DeadLetterActionResponse(
            queue_name=queue.name, affected=len(moved), message_ids=list(moved), redriven_to=moved
        )

    async def purge(
        self, queue_name: str, request: PurgeRequest | dict[str, Any], *, actor: str
    ) -> DeadLetterActionResponse:
        req = parse(PurgeRequest, request)
        queue = await self._with_dlq(queue_name)
        purged: list[str] = []
        while True:
            now = self._clock.now()
            async with self._db.transaction() as conn:
                rows = await conn.fetch(Q.purge_dead_letters, queue.name, BATCH)
                batch = [str(r["msg_id"]) for r in rows]
                await record_action(
                    conn,
                    actor=actor,
                    action="dead_letters.purge",
                    target_kind="message_queue",
                    target_id=queue.name,
                    at=now,
                    reason=req.reason,
                    details={"purged": batch},
                )
            purged.extend(batch)
            if len(rows) < BATCH:
                break
        return DeadLetterActionResponse(
            queue_name=queue.name, affected=len(purged), message_ids=purged
        )

    async def purge_queue(
        self, queue_name: str, *, actor: str, reason: str
    ) -> DeadLetterActionResponse:
        """Every message of the queue itself (not its dead letters), gone."""
        if not reason.strip():
            raise ValidationFailed("reason", "say why")
        queue = await self._registry.config(queue_name)
        if queue.queue_type.value == "topic":
            raise ConflictError(f"{queue_name!r} is a topic: it holds no messages")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            count = await conn.fetchval(Q.purge_queue, queue.name)
            await record_action(
                conn,
                actor=actor,
                action="queue.purge",
                target_kind="message_queue",
                target_id=queue.name,
                at=now,
                reason=reason,
                details={"purged": count},
            )
        return DeadLetterActionResponse(queue_name=queue.name, affected=count, message_ids=[])


def _ids(message_ids: list[str]) -> list[int]:
    ids = []
    for index, value in enumerate(message_ids):
        if not value.isdigit():
            raise ValidationFailed(f"message_ids.{index}", "not a PGMQ message id (digits only)")
        ids.append(int(value))
    return ids

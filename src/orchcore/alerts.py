"""Alerts: what needs a person (a compensation that keeps failing, ...).

Rows are raised by the engine in the same transaction as the state that warrants
them; operators acknowledge and resolve them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import NotFoundError

Q = Queries("orchcore")


class Alert(BaseModel):
    id: UUID
    kind: str
    severity: str
    subject_kind: str
    subject_id: str
    title: str
    details: dict[str, Any]
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class AlertStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def list_alerts(
        self,
        *,
        open_only: bool = True,
        subject_kind: str | None = None,
        subject_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        rows = await self._db.fetch(Q.list_alerts, open_only, subject_kind, subject_id, limit)
        return [Alert.model_validate(dict(row)) for row in rows]

    async def open_count(self) -> int:
        count: int = await self._db.fetchval(Q.open_alert_count)
        return count

    async def acknowledge(self, alert_id: UUID, *, actor: str) -> Alert:
        return await self._change(Q.acknowledge_alert, alert_id, actor, "alert.acknowledge")

    async def resolve(self, alert_id: UUID, *, actor: str) -> Alert:
        return await self._change(Q.resolve_alert, alert_id, actor, "alert.resolve")

    async def _change(self, query: str, alert_id: UUID, actor: str, action: str) -> Alert:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(query, alert_id, now, actor)
            if row is None:
                raise NotFoundError("open alert", str(alert_id))
            await record_action(
                conn,
                actor=actor,
                action=action,
                target_kind="alert",
                target_id=str(alert_id),
                at=now,
            )
        return Alert.model_validate(dict(row))

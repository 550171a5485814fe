"""The audit log: who did what to which target, and why.

Writes happen inside the caller's transaction, so an action and its audit row
commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from orchcore.db.pool import Connection
from orchcore.db.queries import Queries

Q = Queries("orchcore")


class AuditEntry(BaseModel):
    id: int
    actor: str
    action: str
    target_kind: str
    target_id: str
    reason: str | None
    details: dict[str, Any]
    occurred_at: datetime


async def record_action(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target_kind: str,
    target_id: str,
    at: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        Q.record_action, actor, action, target_kind, target_id, reason, details or {}, at
    )


async def recent_actions(
    conn: Connection | asyncpg.Pool,
    *,
    target_kind: str | None = None,
    target_id: str | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    rows = await conn.fetch(Q.recent_actions, target_kind, target_id, limit)
    return [AuditEntry.model_validate(dict(row)) for row in rows]

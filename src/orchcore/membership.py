"""Daemon membership: who is running, seen by heartbeats in the database."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from pydantic import BaseModel

from orchcore.clock import Clock
from orchcore.db import Database, Queries

#: A daemon whose heartbeat is older than this is considered dead.
ALIVE_WINDOW = timedelta(seconds=15)

Q = Queries("orchcore")


class DaemonInfo(BaseModel):
    id: UUID
    daemon_name: str
    hostname: str
    pid: int
    listen: str | None
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    alive: bool


class DaemonMembership:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def join(self, *, name: str | None, listen: str | None, version: str) -> UUID:
        daemon_id = uuid4()
        hostname = socket.gethostname()
        await self._db.execute(
            Q.join_daemon,
            daemon_id,
            name or f"{hostname}:{os.getpid()}",
            hostname,
            os.getpid(),
            listen,
            version,
            self._clock.now(),
        )
        return daemon_id

    async def heartbeat(self, daemon_id: UUID) -> None:
        await self._db.execute(Q.daemon_heartbeat, daemon_id, self._clock.now())

    async def leave(self, daemon_id: UUID) -> None:
        await self._db.execute(Q.leave_daemon, daemon_id, self._clock.now())

    async def list(self, *, recently_stopped: timedelta = timedelta(hours=1)) -> list[DaemonInfo]:
        now = self._clock.now()
        rows = await self._db.fetch(Q.list_daemons, now - ALIVE_WINDOW, now - recently_stopped)
        return [DaemonInfo.model_validate(dict(row)) for row in rows]

"""The connection pool and the codecs every connection gets."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic_core import from_json

log = logging.getLogger("orch.db")

#: What the engine's functions take: a plain connection or one lent by the pool.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

#: How long one statement of the engine may run; the client gives up a little later, so a
#: server that vanished without closing the connection is noticed even then.
STATEMENT_TIMEOUT_SECONDS = 15.0
_CLIENT_MARGIN_SECONDS = 5.0
#: TCP keepalive: an idle connection to a server that vanished (a failover, a cut
#: network) is found dead within about idle + interval * count seconds, before a
#: statement waits on it.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # binary jsonb: version byte 1, then text


def _decode_jsonb(data: bytes) -> Any:
    # pydantic-core's parser, about 4x json.loads on a span's tags (a 1,000-span trace
    # reads 3,000 documents); PostgreSQL's jsonb holds nothing it would read otherwise
    # (no NaN, no lone surrogates: jsonb refuses both on the way in).
    return from_json(data[1:])


def enable_keepalive(conn: Connection) -> bool:
    """Switch on TCP keepalive for a connection over TCP; False when it is not TCP.

    asyncpg has no option for it, so the socket is reached through the connection's
    transport (``_transport``, stable across asyncpg's releases); a unix socket needs none.
    """
    transport = getattr(conn, "_transport", None)
    if transport is None:
        inner = getattr(conn, "_con", None)  # a pool's proxy holds the connection
        transport = getattr(inner, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return True


async def _init_connection(conn: Connection) -> None:
    enable_keepalive(conn)
    # Binary codecs, so COPY (which only speaks binary) can carry JSON columns too.
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "json",
        encoder=lambda v: json.dumps(v).encode(),
        decoder=json.loads,
        schema="pg_catalog",
        format="binary",
    )


async def _keep_session(conn: Connection) -> None:
    """Release without asyncpg's default reset (one extra transaction per release).

    The default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, which PostgreSQL counts as a transaction: on the saga path that was
    six commits a saga for nothing. The engine's pooled connections keep no session
    state: LISTEN has a connection of its own, the migration lock is released
    explicitly, no statement uses SET or cursors (the bus's insert trigger keeps
    the time of its last notification in a session setting: a throttle, fine to
    keep). asyncpg still rolls back a transaction left open before this is called.
    """


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """A single connection with the engine's codecs (used for LISTEN and migrations)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, **kwargs)
    await _init_connection(conn)
    return conn


class Database:
    """Owns the asyncpg pool; every database operation of the engine goes through it."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            # The server cancels a statement that runs too long (a lock held by a stuck
            # session, say); the client stops waiting a little later in any case.
            command_timeout=statement_timeout + _CLIENT_MARGIN_SECONDS,
            server_settings={
                "application_name": "orch",
                "statement_timeout": str(int(statement_timeout * 1000)),
                "idle_in_transaction_session_timeout": str(int(statement_timeout * 2000)),
            },
            # Keep idle connections for a while; recycle them so a restarted
            # server or failover is picked up without intervention.
            max_inactive_connection_lifetime=300,
        )
        return cls(pool, dsn)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self.pool.execute(query, *args)

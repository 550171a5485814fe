"""The connection pool and the codecs every connection gets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: What the engine's functions take: a plain connection or one lent by the pool.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # binary jsonb: version byte 1, then text


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: Connection) -> None:
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
    explicitly, no statement uses SET or cursors. asyncpg still rolls back a
    transaction left open before this is called.
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
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings={"application_name": "orch"},
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

"""PGMQ is installed by migrate(): once, under the migration lock, from many processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from orchcore.db.migrate import bundled_pgmq, install_pgmq, migrate, pgmq_in_use
from orchcore.db.pool import connect
from tests.support.database import create_empty_database, drop_database, with_database


@pytest.fixture
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = await create_empty_database(pg_admin_dsn, "orch_pgmq")
    yield with_database(pg_admin_dsn, name)
    await drop_database(pg_admin_dsn, name)


async def test_many_migrating_at_once_install_pgmq_once(empty_dsn: str) -> None:
    conns = [await connect(empty_dsn) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(c) for c in conns))
        installed = await pgmq_in_use(conns[0])
        assert installed is not None and installed.source == "sql"
        assert await conns[0].fetchval("SELECT count(*) FROM orch_pgmq") == 1
        assert await install_pgmq(conns[1]) is None  # recorded: never run twice
        await conns[0].execute("SELECT pgmq.create('smoke')")
        assert await conns[0].fetchval("SELECT * FROM pgmq.send('smoke', '{}')") == 1
    finally:
        for c in conns:
            await c.close()


async def test_a_pgmq_someone_else_installed_is_adopted_not_reinstalled(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        _, script = bundled_pgmq()
        async with conn.transaction():
            await conn.execute(script)
        await migrate(conn)
        installed = await pgmq_in_use(conn)
        assert installed is not None and (installed.version, installed.source) == (
            "unknown",
            "found",
        )
    finally:
        await conn.close()


async def test_nothing_recorded_before_the_first_migration(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        assert await pgmq_in_use(conn) is None
    finally:
        await conn.close()

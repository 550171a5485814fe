"""Which database errors pass: told from real errors of a real server."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from orchcore.db.failures import is_transient


async def test_a_statements_own_55000_recurs(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TEMPORARY SEQUENCE never_advanced")
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError) as raised:
            await conn.fetchval("SELECT currval('never_advanced')")  # 55000, not a pause
        assert not is_transient(raised.value)
    finally:
        await conn.close()


async def test_a_database_closed_to_connections_passes(dsn: str, pg_admin_dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")  # the embedded server's DSN has ?host=/run/...
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError) as raised:
            await asyncpg.connect(dsn)
        assert is_transient(raised.value)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()

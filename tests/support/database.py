"""A real PostgreSQL for the test session, and a fresh migrated database per test.

``ORCH_TEST_DSN`` names a server to use (any database on it; we create our own);
without it a private throw-away server is started once per session. Each test gets
a database cloned from a migrated template: independent and about 30 ms to make.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orchcore.db.embedded import EmbeddedPostgres
from orchcore.db.migrate import migrate
from orchcore.db.pool import connect


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@contextmanager
def session_server() -> Iterator[str]:
    """Yield an admin DSN (database 'postgres') of a server this session may use."""
    given = os.environ.get("ORCH_TEST_DSN")
    if given:
        yield with_database(given, "postgres")
        return
    folder = Path(tempfile.mkdtemp(prefix="orch-test-pg-"))
    folder.chmod(0o755)  # as root, the server runs as an unprivileged user
    server = EmbeddedPostgres(folder, durable=False)
    try:
        dsn = server.acquire()
        yield with_database(dsn, "postgres")
    finally:
        server.release()
        shutil.rmtree(folder, ignore_errors=True)


async def create_empty_database(admin_dsn: str, prefix: str) -> str:
    """A new database named ``<prefix>_<random>`` with nothing in it (no orch schema)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def create_template(admin_dsn: str) -> str:
    name = await create_empty_database(admin_dsn, "orch_tmpl")
    conn = await connect(with_database(admin_dsn, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name


async def clone_database(admin_dsn: str, template: str) -> str:
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def drop_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()

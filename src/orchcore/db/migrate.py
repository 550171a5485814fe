"""Ordered SQL migrations, applied once each, safe to run from many processes at once.

Every process that opens the database (daemon, console, CLI, demo) calls
:func:`migrate`. A session-level advisory lock serialises them: the first applies
what is missing, the others wait and then find nothing to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from orchcore.db.pool import Connection
from orchcore.db.queries import Queries

# An arbitrary constant: the advisory lock key that guards orch's migrations.
MIGRATION_LOCK_KEY = 7_400_2026

Q = Queries("orchcore.db")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    folder = resources.files("orchcore.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: Connection) -> list[Migration]:
    """Apply every migration not yet recorded; return the ones applied now."""
    applied_now: list[Migration] = []
    await conn.execute(Q.take_migration_lock, MIGRATION_LOCK_KEY)
    try:
        await conn.execute(Q.create_migration_ledger)
        done = {row["version"]: row["checksum"] for row in await conn.fetch(Q.applied_migrations)}
        for migration in available_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    Q.record_migration, migration.version, migration.name, migration.checksum
                )
            applied_now.append(migration)
    finally:
        await conn.execute(Q.release_migration_lock, MIGRATION_LOCK_KEY)
    return applied_now


async def pending_migrations(conn: Connection) -> list[Migration]:
    done: set[str] = set()
    if await conn.fetchval(Q.migration_ledger_exists):
        done = {row["version"] for row in await conn.fetch(Q.applied_migrations)}
    return [m for m in available_migrations() if m.version not in done]

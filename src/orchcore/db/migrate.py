"""Ordered SQL migrations, applied once each, safe to run from many processes at once.

Only ``orch db migrate``, the daemon (unless ``--no-migrate``) and the demo call
:func:`migrate`: an upgrade changes the schema when an operator means it to. Every other
face opens with :func:`check_schema`, which refuses a schema older or newer than this
orch's with one line that says what to do. A session-level advisory lock serialises
concurrent migrators: the first applies what is missing, the others wait and then find
nothing to do.

Each applied migration's checksum (sha256 of its text) is recorded with it and compared
on every migrate and check: a migration edited after it was applied is an error naming
the file, because the databases that ran the old text would silently differ from new ones.

PGMQ, the message bus's storage, is installed under the same lock before the first
migration that uses it: the ``pgmq`` extension where the server has one (Supabase,
a server with the extension packaged), otherwise the SQL-only build that the ``pgmq``
wheel ships. Which one, and its version, is recorded in ``orch_pgmq``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata, resources
from pathlib import Path

import asyncpg

from orchcore.db.pool import Connection
from orchcore.db.queries import Queries
from orchcore.errors import OrchError

# An arbitrary constant: the advisory lock key that guards orch's migrations.
MIGRATION_LOCK_KEY = 7_400_2026

Q = Queries("orchcore.db")
log = logging.getLogger("orch.db")

#: The distribution whose wheel carries PGMQ's SQL-only build (pinned in pyproject.toml).
PGMQ_DISTRIBUTION = "pgmq"


class SchemaMode(StrEnum):
    """What opening the database does about its schema."""

    #: apply what is missing (``orch db migrate``, the daemon, the demo)
    MIGRATE = "migrate"
    #: refuse, with what to do, unless the schema is exactly this orch's (every other face)
    CHECK = "check"
    #: neither: for a caller that looks at a bare database on purpose
    UNCHECKED = "unchecked"


class SchemaMismatch(OrchError):
    """The database's schema is not the one this orch knows: older, newer, or edited."""

    http_status = 503
    #: the CLI's exit code for it: like bad input, the operator has something to do first
    exit_code = 2


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        # read_text translates line endings, so a checkout with CRLF sums the same
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def file_name(self) -> str:
        return f"{self.version}_{self.name}.sql"


def available_migrations() -> list[Migration]:
    folder = resources.files("orchcore.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> str:
    """The newest migration this orch carries: the schema version it needs."""
    return available_migrations()[-1].version


def refusal(
    applied: Mapping[str, str], known: list[Migration], *, pending_allowed: bool
) -> SchemaMismatch | None:
    """Why this orch must not use a database whose ledger holds ``applied``
    (version → recorded checksum); None when it may.

    ``pending_allowed``: missing migrations are what a migrator is about to apply."""
    edited = [m.file_name for m in known if applied.get(m.version, m.checksum) != m.checksum]
    if edited:
        return SchemaMismatch(
            f"migration {', '.join(edited)} was edited after it was applied "
            "(its checksum differs from the one the database recorded): restore the file "
            "as released and put the change in a new migration"
        )
    latest = known[-1].version
    unknown = sorted(set(applied) - {m.version for m in known})
    if unknown:
        return SchemaMismatch(
            f"the database was migrated by a newer orch ({unknown[-1]} > {latest}): upgrade orch"
        )
    pending = [m.version for m in known if m.version not in applied]
    if not pending or pending_allowed:
        return None
    if not applied:
        return SchemaMismatch(
            f"the database holds no orch schema, this orch needs {latest}: run `orch db migrate`"
        )
    at = max(applied)
    gap = [version for version in pending if version < at]
    missing = f" without {', '.join(gap)}" if gap else ""
    return SchemaMismatch(
        f"the database schema is at {at}{missing}, this orch needs {latest}: run `orch db migrate`"
    )


async def recorded_migrations(conn: Connection) -> dict[str, str]:
    """Version → checksum of every migration the database records (none: no ledger)."""
    if not await conn.fetchval(Q.migration_ledger_exists):
        return {}
    return {row["version"]: row["checksum"] for row in await conn.fetch(Q.applied_migrations)}


async def check_schema(conn: Connection) -> None:
    """Raise :class:`SchemaMismatch` unless the schema is exactly this orch's. Reads only."""
    applied, known = await recorded_migrations(conn), available_migrations()
    problem = refusal(applied, known, pending_allowed=False)
    if problem is None:
        return
    if refusal(applied, known, pending_allowed=True) is None and await conn.fetchval(
        Q.migration_in_progress, MIGRATION_LOCK_KEY
    ):
        # A daemon that just started is migrating: "run orch db migrate" would mislead.
        at = max(applied) if applied else "none"
        raise SchemaMismatch(
            f"the database is being migrated to {known[-1].version} (at {at} now) by another "
            "process: try again when it finishes"
        )
    raise problem


async def migrate(conn: Connection) -> list[Migration]:
    """Apply every migration not yet recorded; return the ones applied now.

    Refuses (applying nothing) a database migrated by a newer orch or whose applied
    migrations differ from this orch's files."""
    applied_now: list[Migration] = []
    known = available_migrations()
    await conn.execute(Q.take_migration_lock, MIGRATION_LOCK_KEY)
    try:
        await conn.execute(Q.create_migration_ledger)
        done = await recorded_migrations(conn)
        problem = refusal(done, known, pending_allowed=True)
        if problem is not None:
            raise problem
        await install_pgmq(conn)
        for migration in known:
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
    done = await recorded_migrations(conn)
    return [m for m in available_migrations() if m.version not in done]


@dataclass(frozen=True)
class PgmqInstall:
    """Which PGMQ the database runs: ``source`` is 'extension', 'sql' (orch installed
    the bundled SQL build) or 'found' (a SQL build someone else installed)."""

    version: str
    source: str


def bundled_pgmq() -> tuple[str, str]:
    """(version, install script) of the SQL-only build in the ``pgmq`` wheel.

    Read as files of the installed distribution: importing ``pgmq`` (even
    ``importlib.resources.files("pgmq")``) would import its client and psycopg."""
    try:
        dist = metadata.distribution(PGMQ_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            "the 'pgmq' package (which ships PGMQ's SQL) is not installed; pip install pgmq"
        ) from None
    folder = Path(str(dist.locate_file("pgmq/sql")))
    version_lines = folder.joinpath("VERSION").read_text("utf-8").splitlines()
    version = next(
        (line.strip() for line in version_lines if line.strip() and not line.startswith("#")),
        "unknown",
    )
    return version, folder.joinpath("pgmq.sql").read_text("utf-8")


async def install_pgmq(conn: Connection) -> PgmqInstall | None:
    """Install PGMQ once; return what was installed now (None when it was there already).

    Runs under the migration lock. The SQL build cannot be applied twice (its types
    have no IF NOT EXISTS), so what is recorded decides, not what the schema looks like.
    """
    await conn.execute(Q.create_pgmq_ledger)
    recorded = await conn.fetchrow(Q.recorded_pgmq)
    if recorded is not None:
        await _follow_extension_upgrade(conn, recorded["version"], recorded["source"])
        return None
    async with conn.transaction():
        installed = await _install_pgmq_now(conn)
        await conn.execute(Q.record_pgmq, installed.version, installed.source)
    log.info("PGMQ %s installed (%s)", installed.version, installed.source)
    return installed


async def _install_pgmq_now(conn: Connection) -> PgmqInstall:
    version = await conn.fetchval(Q.pgmq_extension_version)
    if version is not None:
        return PgmqInstall(version, "extension")
    if await conn.fetchval(Q.pgmq_schema_present):
        return PgmqInstall("unknown", "found")
    if await conn.fetchval(Q.pgmq_extension_available):
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves nothing behind
                await conn.execute(Q.create_pgmq_extension)
        except asyncpg.PostgresError as exc:  # no privilege to create it, say
            log.info("PGMQ extension available but not created (%s); using its SQL build", exc)
        else:
            return PgmqInstall(await conn.fetchval(Q.pgmq_extension_version), "extension")
    bundled_version, script = bundled_pgmq()
    await conn.execute(script)
    return PgmqInstall(bundled_version, "sql")


async def _follow_extension_upgrade(conn: Connection, recorded: str, source: str) -> None:
    """After ``ALTER EXTENSION pgmq UPDATE`` the ledger records the new version."""
    if source != "extension":
        bundled_version, _ = bundled_pgmq()
        if source == "sql" and bundled_version != recorded:
            log.warning(
                "PGMQ %s is installed but this orch bundles %s; see docs/BUS.md on upgrades",
                recorded,
                bundled_version,
            )
        return
    current = await conn.fetchval(Q.pgmq_extension_version)
    if current is not None and current != recorded:
        await conn.execute(Q.record_pgmq, current, source)


async def pgmq_in_use(conn: Connection) -> PgmqInstall | None:
    """The PGMQ recorded for this database (None before the first migration)."""
    if not await conn.fetchval(Q.pgmq_ledger_exists):
        return None
    row = await conn.fetchrow(Q.recorded_pgmq)
    return PgmqInstall(row["version"], row["source"]) if row is not None else None

"""Only `orch db migrate`, the daemon and the demo migrate. Every other face refuses a
schema older or newer than this orch's with one line, leaving it untouched; an applied
migration whose file was edited since is refused by migrate and by the check alike."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchcore import Orch, Settings
from orchcore.db.migrate import (
    MIGRATION_LOCK_KEY,
    Q,
    SchemaMismatch,
    SchemaMode,
    available_migrations,
    check_schema,
    install_pgmq,
    latest_version,
    migrate,
    refusal,
)
from orchcore.db.pool import connect
from orchtui.app import run_console
from tests.support.cli import run_orch
from tests.support.daemons import DaemonProcess
from tests.support.database import create_empty_database, drop_database, with_database

LATEST = latest_version()
PREVIOUS = available_migrations()[-2].version


@pytest.fixture
async def bare_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    """An empty database: no orch schema at all."""
    name = await create_empty_database(pg_admin_dsn, "orch_bare")
    yield with_database(pg_admin_dsn, name)
    await drop_database(pg_admin_dsn, name)


@pytest.fixture
async def older_dsn(bare_dsn: str) -> str:
    """A database an earlier orch migrated: every migration but the newest applied."""
    conn = await connect(bare_dsn)
    try:
        await conn.execute(Q.create_migration_ledger)
        await install_pgmq(conn)
        for migration in available_migrations()[:-1]:
            await conn.execute(migration.sql)
            await conn.execute(
                Q.record_migration, migration.version, migration.name, migration.checksum
            )
    finally:
        await conn.close()
    return bare_dsn


async def schema_fingerprint(dsn: str) -> tuple[list[str], list[str]]:
    """The ledger's versions and every relation in public: what a migration would change."""
    conn = await asyncpg.connect(dsn)
    try:
        versions: list[str] = []
        if await conn.fetchval(Q.migration_ledger_exists):
            versions = [
                r["version"]
                for r in await conn.fetch(
                    "SELECT version FROM orch_schema_migrations ORDER BY version"
                )
            ]
        relations = await conn.fetch(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' ORDER BY relname"
        )
        return versions, [r["relname"] for r in relations]
    finally:
        await conn.close()


async def edit_recorded_checksum(dsn: str, version: str) -> None:
    """As if the file of ``version`` had changed since the database applied it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE orch_schema_migrations SET checksum = $2 WHERE version = $1",
            version,
            "0" * 64,
        )
    finally:
        await conn.close()


async def add_future_migration(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(Q.record_migration, "9999", "from_the_future", "f" * 64)
    finally:
        await conn.close()


BEHIND = f"the database schema is at {PREVIOUS}, this orch needs {LATEST}: run `orch db migrate`"


async def test_a_verb_on_an_older_schema_says_migrate_and_changes_nothing(
    older_dsn: str,
) -> None:
    before = await schema_fingerprint(older_dsn)
    assert before[0][-1] == PREVIOUS

    listed = await run_orch(older_dsn, "service", "list")
    assert (listed.code, listed.stdout) == (2, "")
    assert listed.stderr == f"orch: error: {BEHIND}\n"
    assert await schema_fingerprint(older_dsn) == before  # untouched

    migrated = await run_orch(older_dsn, "db", "migrate", "--json")
    assert migrated.code == 0, migrated.stderr
    assert migrated.json()["applied"] == [available_migrations()[-1].file_name[:-4]]
    assert (await run_orch(older_dsn, "service", "list", "--json")).code == 0


async def test_a_verb_on_a_bare_database_creates_nothing(bare_dsn: str) -> None:
    result = await run_orch(bare_dsn, "status", "--json")
    assert result.code == 2
    assert result.stderr == (
        f"orch: error: the database holds no orch schema, this orch needs {LATEST}:"
        " run `orch db migrate`\n"
    )
    assert await schema_fingerprint(bare_dsn) == ([], [])


async def test_db_status_names_the_schema_and_what_is_wrong(older_dsn: str) -> None:
    status = (await run_orch(older_dsn, "db", "status", "--json")).json()
    assert status["schema_version"] == PREVIOUS
    assert status["schema_needed"] == LATEST
    assert status["pending_migrations"] == [available_migrations()[-1].file_name[:-4]]
    assert status["schema_problem"] == BEHIND


async def test_the_console_refuses_an_older_schema(
    older_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A console that may act (not --readonly) used to migrate on opening."""
    before = await schema_fingerprint(older_dsn)
    # run_console runs an event loop of its own: give it a thread.
    code = await asyncio.to_thread(
        run_console, Settings(database_url=older_dsn), readonly=False, dsn=None
    )
    assert code == 2
    assert capsys.readouterr().err == f"orch console: {BEHIND}\n"
    assert await schema_fingerprint(older_dsn) == before


async def test_a_newer_schema_is_refused_by_every_face(dsn: str) -> None:
    await add_future_migration(dsn)
    newer = f"the database was migrated by a newer orch (9999 > {LATEST}): upgrade orch"

    for args in (("status",), ("db", "migrate")):
        result = await run_orch(dsn, *args)
        assert (result.code, result.stderr) == (2, f"orch: error: {newer}\n"), args
    with pytest.raises(SchemaMismatch, match=r"newer orch \(9999 > "):
        await Orch.open(Settings(database_url=dsn), listen=False, start_discovery=False)


async def test_an_edited_migration_is_refused_by_migrate_and_by_check(dsn: str) -> None:
    await edit_recorded_checksum(dsn, "0003")
    edited = (
        "migration 0003_sagas.sql was edited after it was applied (its checksum differs"
        " from the one the database recorded): restore the file as released and put the"
        " change in a new migration"
    )
    for args in (("db", "migrate"), ("workflow", "list")):
        result = await run_orch(dsn, *args)
        assert (result.code, result.stderr) == (2, f"orch: error: {edited}\n"), args

    conn = await connect(dsn)
    try:
        with pytest.raises(SchemaMismatch, match=r"0003_sagas\.sql"):
            await check_schema(conn)
        with pytest.raises(SchemaMismatch, match=r"0003_sagas\.sql"):
            await migrate(conn)
    finally:
        await conn.close()


def test_a_file_edited_after_release_is_named() -> None:
    """The comparison itself: the database recorded the released text's checksum."""
    released = available_migrations()
    applied = {m.version: m.checksum for m in released}
    edited = [
        dataclasses.replace(m, sql=m.sql + "\n-- a later touch\n") if m.version == "0002" else m
        for m in released
    ]
    assert refusal(applied, released, pending_allowed=False) is None
    problem = refusal(applied, edited, pending_allowed=True)
    assert problem is not None and str(problem).startswith("migration 0002_call_path.sql ")


def test_a_gap_in_the_ledger_is_named() -> None:
    known = available_migrations()
    applied = {m.version: m.checksum for m in known if m.version != "0004"}
    problem = refusal(applied, known, pending_allowed=False)
    assert str(problem) == (
        f"the database schema is at {LATEST} without 0004, this orch needs {LATEST}:"
        " run `orch db migrate`"
    )
    assert refusal(applied, known, pending_allowed=True) is None  # migrate fills it


async def test_a_check_during_a_migration_says_so(older_dsn: str) -> None:
    """A verb run just as a daemon migrates is told to wait, not to migrate."""
    migrator = await asyncpg.connect(older_dsn)
    checker = await connect(older_dsn)
    try:
        await migrator.execute(Q.take_migration_lock, MIGRATION_LOCK_KEY)
        with pytest.raises(SchemaMismatch) as refused:
            await check_schema(checker)
        assert str(refused.value) == (
            f"the database is being migrated to {LATEST} (at {PREVIOUS} now) by another"
            " process: try again when it finishes"
        )
        await migrator.execute(Q.release_migration_lock, MIGRATION_LOCK_KEY)
        with pytest.raises(SchemaMismatch, match="run `orch db migrate`"):
            await check_schema(checker)
    finally:
        await migrator.close()
        await checker.close()


async def test_the_engine_checks_by_default_and_migrates_when_asked(older_dsn: str) -> None:
    settings = Settings(database_url=older_dsn)
    with pytest.raises(SchemaMismatch, match=f"at {PREVIOUS}"):
        await Orch.open(settings, listen=False, start_discovery=False)
    orch = await Orch.open(settings, schema=SchemaMode.MIGRATE, listen=False)
    await orch.close()
    assert (await schema_fingerprint(older_dsn))[0][-1] == LATEST


async def test_daemon_no_migrate_refuses_an_older_schema(older_dsn: str) -> None:
    before = await schema_fingerprint(older_dsn)
    result = await run_orch(older_dsn, "daemon", "--listen", "127.0.0.1:0", "--no-migrate")
    assert result.code == 2
    assert result.stderr.strip().splitlines()[-1] == f"orch: error: {BEHIND}"
    assert await schema_fingerprint(older_dsn) == before


async def test_the_daemon_migrates_by_default(older_dsn: str) -> None:
    daemon = await DaemonProcess(older_dsn, "migrating").start()
    try:
        assert (await schema_fingerprint(older_dsn))[0][-1] == LATEST
    finally:
        assert await daemon.terminate() == 0

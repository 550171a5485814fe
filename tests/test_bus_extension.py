"""PGMQ as an installed extension: migrate() creates it, records it, follows its upgrades.

The shared test server has no ``pgmq`` extension, so this file makes one: a private
copy of a PostgreSQL installation (pgserver's, found as the embedded server finds its
binaries) whose extension directory gets a ``pgmq.control`` and ``pgmq--<v>.sql`` made
from the SQL build the ``pgmq`` wheel bundles (written to double as the extension
script), and an update script ``pgmq--<v>--<v>-test.sql``. One embedded server runs
from that copy for the whole file (``ORCH_PG_BIN`` points at it); each test gets a
fresh, empty database on it.

Since PGMQ 1.6.0 (pgmq/pgmq#413) queue and archive tables are deliberately *not*
members of the extension, so that ``pg_dump`` dumps them with their messages; the
extension's own tables are members, and ``pgmq.meta`` (which lists the queues) is a
configuration table whose rows ``pg_dump`` dumps too. That is what is asserted here.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchcore import Orch
from orchcore.db.embedded import EmbeddedPostgres, EmbeddedUnavailable, find_server_binaries
from orchcore.db.migrate import (
    PgmqInstall,
    SchemaMode,
    bundled_pgmq,
    install_pgmq,
    migrate,
    pgmq_in_use,
)
from orchcore.db.pool import connect
from tests.support.database import create_empty_database, drop_database, with_database

pytestmark = pytest.mark.slow

#: The version the update script moves to (``ALTER EXTENSION pgmq UPDATE TO ...``).
UPGRADE_SUFFIX = "-test"

#: What the extension makes at CREATE EXTENSION and keeps as its members.
PGMQ_OWN_TABLES = {"meta", "notify_insert_throttle", "topic_bindings"}


@dataclass(frozen=True)
class ExtensionServer:
    admin_dsn: str  # database 'postgres' of the server running from the copy
    version: str  # the bundled PGMQ version, the control file's default_version
    extension_dir: Path  # the copy's share/.../extension, holding pgmq.control
    bin_dir: Path  # the copy's bin (pg_dump lives there)

    @property
    def upgraded_version(self) -> str:
        return self.version + UPGRADE_SUFFIX


def _copy_installation(bin_dir: Path, target: Path) -> Path:
    """Copy the installation holding ``bin_dir`` into ``target``; return the copy's root.

    pgserver's binaries find their libraries by an RPATH relative to themselves
    (``$ORIGIN/../../../pgserver.libs``), so ``<package>.libs`` beside the package is
    copied beside the copy too, as embedded.py does for the server user."""
    install = bin_dir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        copied = target / package.name / install.name
        shutil.copytree(libs, target / libs.name, symlinks=True)
    else:
        copied = target / install.name
    shutil.copytree(install, copied, symlinks=True)
    return copied


def _extension_dir(install: Path) -> Path | None:
    """The copy's own extension directory, or None if its share dir lies outside it
    (a distribution's server whose share/ is elsewhere and compiled in as absolute)."""
    pg_config = install / "bin" / "pg_config"
    candidates: list[Path] = []
    if pg_config.is_file():
        result = subprocess.run(
            [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()) / "extension")
    candidates += [install / "share" / "postgresql" / "extension", install / "share" / "extension"]
    for folder in candidates:
        if (folder / "plpgsql.control").is_file() and folder.resolve().is_relative_to(
            install.resolve()
        ):
            return folder
    return None


def _write_pgmq_extension(folder: Path, version: str, script: str) -> None:
    (folder / "pgmq.control").write_text(
        "# PGMQ from the SQL build bundled in the pgmq wheel (orch's tests)\n"
        "comment = 'A lightweight message queue. Like AWS SQS and RSMQ but on Postgres.'\n"
        f"default_version = '{version}'\n"
        "schema = 'pgmq'\n"
        "relocatable = false\n",
        encoding="utf-8",
    )
    (folder / f"pgmq--{version}.sql").write_text(script, encoding="utf-8")
    # An update that changes nothing but the version: enough to see orch follow it.
    (folder / f"pgmq--{version}--{version}{UPGRADE_SUFFIX}.sql").write_text(
        "-- orch's tests: a no-op update\n", encoding="utf-8"
    )
    for path in folder.glob("pgmq*"):
        path.chmod(0o644)  # the server user (nobody, when we are root) reads them


def _stop_immediately(server: EmbeddedPostgres) -> None:
    if not (server.pgdata / "postmaster.pid").exists():
        return
    kwargs: dict[str, Any] = {}
    if server.user is not None:
        kwargs = {"user": server.user.uid, "group": server.user.gid, "extra_groups": []}
    pg_ctl = str(server.bin_dir / "pg_ctl")
    subprocess.run(
        [pg_ctl, "-D", str(server.pgdata), "-m", "immediate", "-w", "stop"],
        capture_output=True,
        cwd="/",
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
        **kwargs,
    )


@pytest.fixture(scope="module")
def pgmq_server() -> Iterator[ExtensionServer]:
    version, script = bundled_pgmq()
    try:
        found = find_server_binaries()
    except EmbeddedUnavailable as error:
        pytest.skip(f"no PostgreSQL installation to copy: {error}")
    folder = Path(tempfile.mkdtemp(prefix="orch-pgmq-ext-"))
    folder.chmod(0o755)  # as root, the server runs as an unprivileged user
    server: EmbeddedPostgres | None = None
    try:
        install = _copy_installation(found, folder / "install")
        extension_dir = _extension_dir(install)
        if extension_dir is None:
            pytest.skip(f"the PostgreSQL in {found.parent} keeps its share dir outside it")
        _write_pgmq_extension(extension_dir, version, script)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ORCH_PG_BIN", str(install / "bin"))
            server = EmbeddedPostgres(folder / "data", durable=False)
            dsn = server.acquire()  # finds (and keeps) the binaries while ORCH_PG_BIN is set
        # The server runs from the copy (or from embedded.py's copy of it, which would
        # include the extension files as well); either way, not from the original.
        assert server.bin_dir.resolve().is_relative_to(folder.resolve())
        yield ExtensionServer(
            with_database(dsn, "postgres"), version, extension_dir, install / "bin"
        )
    finally:
        if server is not None:
            _stop_immediately(server)
            server.release()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def fresh_dsn(pgmq_server: ExtensionServer) -> AsyncIterator[str]:
    """An empty database (nothing migrated) on the server that has the extension."""
    name = await create_empty_database(pgmq_server.admin_dsn, "orch_pgmq_ext")
    yield with_database(pgmq_server.admin_dsn, name)
    await drop_database(pgmq_server.admin_dsn, name)


async def extension_members(conn: asyncpg.Connection) -> set[str]:
    """Relations in schema pgmq that depend on the pgmq extension as its members."""
    rows = await conn.fetch(
        """
        SELECT c.relname
        FROM pg_depend d
        JOIN pg_class c ON c.oid = d.objid
        WHERE d.classid = 'pg_class'::regclass
          AND d.refclassid = 'pg_extension'::regclass
          AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgmq')
          AND d.deptype = 'e'
          AND c.relnamespace = 'pgmq'::regnamespace
        """
    )
    return {r["relname"] for r in rows}


async def test_migrate_creates_the_extension_and_records_it_once(
    pgmq_server: ExtensionServer, fresh_dsn: str
) -> None:
    first, second = await connect(fresh_dsn), await connect(fresh_dsn)
    try:
        available = await first.fetchrow(
            "SELECT default_version, installed_version FROM pg_available_extensions"
            " WHERE name = 'pgmq'"
        )
        assert available is not None, "the copy's pgmq.control is not seen by the server"
        assert (available["default_version"], available["installed_version"]) == (
            pgmq_server.version,
            None,
        )

        assert await migrate(first)  # orch's own migrations ran, on top of the extension
        installed = PgmqInstall(pgmq_server.version, "extension")
        assert await pgmq_in_use(first) == installed
        extension = await first.fetchrow(
            "SELECT extversion, extnamespace::regnamespace::text AS schema, extrelocatable"
            " FROM pg_extension WHERE extname = 'pgmq'"
        )
        assert extension is not None
        assert tuple(extension) == (pgmq_server.version, "pgmq", False)
        ledger = await first.fetch("SELECT version, source, updated_at FROM orch_pgmq")
        assert [(r["version"], r["source"]) for r in ledger] == [(pgmq_server.version, "extension")]
        # The script ran as the extension's: its tables are members, meta a config table.
        assert await extension_members(first) >= PGMQ_OWN_TABLES
        config = await first.fetchval(
            "SELECT array(SELECT unnest(extconfig)::regclass::text) FROM pg_extension"
            " WHERE extname = 'pgmq'"
        )
        assert "pgmq.meta" in config

        # Another process migrating later: nothing to apply, nothing installed again.
        assert await migrate(second) == []
        assert await install_pgmq(second) is None
        assert await pgmq_in_use(second) == installed
        assert (
            await second.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pgmq'") == 1
        )
        again = await second.fetch("SELECT version, source, updated_at FROM orch_pgmq")
        assert [tuple(r) for r in again] == [tuple(r) for r in ledger]  # not even touched
    finally:
        await first.close()
        await second.close()


async def test_the_bus_runs_on_the_extension(pgmq_server: ExtensionServer, fresh_dsn: str) -> None:
    orch = await Orch.open(dsn=fresh_dsn, schema=SchemaMode.MIGRATE)
    try:
        queue = await orch.bus.create_queue({"queue_name": "ext_orders"}, actor="test")
        assert queue.dead_letter_queue == "ext_orders_dlq"

        def order(n: int) -> dict[str, Any]:
            return {
                "queue_name": "ext_orders",
                "message_type": "order.created",
                "message_payload": {"n": n, "marker": f"ext-order-{n}"},
            }

        sent = await orch.bus.send(order(1), producer=None, actor="test")
        assert sent.status == "queued"
        got = await orch.bus.receive("ext_orders", {"max_messages": 10}, consumer=None)
        assert [(m.message_id, m.message_payload["n"]) for m in got.messages] == [
            (sent.message_id, 1)
        ]
        await orch.bus.ack("ext_orders", sent.message_id, consumer=None)
        assert (await orch.bus.receive("ext_orders", {}, consumer=None)).messages == []
        kept = await orch.bus.send(order(2), producer=None, actor="test")  # left queued

        conn = await asyncpg.connect(fresh_dsn)
        try:
            assert await pgmq_in_use(conn) == PgmqInstall(pgmq_server.version, "extension")
            queues = {r["queue_name"] for r in await conn.fetch("SELECT queue_name FROM pgmq.meta")}
            assert {"ext_orders", "ext_orders_dlq"} <= queues
            assert await conn.fetchval("SELECT count(*) FROM pgmq.q_ext_orders") == 1
            # PGMQ >= 1.6: queue and archive tables are not extension members (so that
            # pg_dump keeps them); the extension's own tables still are.
            members = await extension_members(conn)
            assert members >= PGMQ_OWN_TABLES
            queue_tables = {
                f"{kind}_{name}" for kind in ("q", "a") for name in ("ext_orders", "ext_orders_dlq")
            }
            present = {
                r["relname"]
                for r in await conn.fetch(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace"
                    " AND relkind IN ('r', 'p')"
                )
            }
            assert queue_tables <= present
            assert not queue_tables & members
        finally:
            await conn.close()
    finally:
        await orch.close()

    # What that design is for: a dump of the database carries the queued message and
    # the queue's row in pgmq.meta (a config table of the extension).
    pg_dump = await asyncio.create_subprocess_exec(
        str(pgmq_server.bin_dir / "pg_dump"),
        "--data-only",
        "--dbname",
        fresh_dsn,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(pg_dump.communicate(), 60)
    assert pg_dump.returncode == 0, err.decode()
    dump = out.decode()
    assert "COPY pgmq.q_ext_orders " in dump
    rows = [line for line in dump.splitlines() if line.startswith(f"{kept.message_id}\t")]
    assert any("ext-order-2" in row for row in rows), dump
    assert "COPY pgmq.meta " in dump and "ext_orders_dlq" in dump


async def test_an_extension_upgrade_is_recorded(
    pgmq_server: ExtensionServer, fresh_dsn: str
) -> None:
    conn = await connect(fresh_dsn)
    try:
        await migrate(conn)
        before = await conn.fetchrow("SELECT version, updated_at FROM orch_pgmq")
        assert before is not None and before["version"] == pgmq_server.version

        await conn.execute(f"ALTER EXTENSION pgmq UPDATE TO '{pgmq_server.upgraded_version}'")
        assert await pgmq_in_use(conn) == PgmqInstall(pgmq_server.version, "extension")
        assert await migrate(conn) == []  # the next process to open the database
        assert await pgmq_in_use(conn) == PgmqInstall(pgmq_server.upgraded_version, "extension")
        after = await conn.fetch("SELECT version, source, installed_at, updated_at FROM orch_pgmq")
        assert len(after) == 1 and after[0]["updated_at"] > before["updated_at"]
        assert (
            await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'pgmq'")
            == pgmq_server.upgraded_version
        )
        await conn.execute("SELECT pgmq.create('after_upgrade')")
        assert await conn.fetchval("SELECT * FROM pgmq.send('after_upgrade', '{}')") == 1
    finally:
        await conn.close()

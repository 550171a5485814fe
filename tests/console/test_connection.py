"""A lost database shows a banner, and the console recovers by itself when it is back.

The outage is real: the test database stops accepting connections and every backend
on it is terminated, the listener's and the pool's alike.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import pytest

from orchcore import ManualClock, Orch, Settings
from orchcore.db.migrate import SchemaMode
from orchtui.app import ListenerStateChanged, OrchConsole, run_console
from orchtui.widgets.banner import ConnectionBanner
from tests.console.helpers import SIZE, off_screen, on_screen, pane_loaded, register_service
from tests.console.sources import SourceOf, console_on
from tests.support.database import with_database
from tests.support.http import free_port
from tests.support.polling import eventually

LOST = "database connection lost — retrying…"
#: over the API, the daemon answers that it cannot reach its database: the link is lost
LOST_EITHER = "connection lost — retrying…"


@asynccontextmanager
async def database_down(admin_dsn: str, dsn: str) -> AsyncIterator[None]:
    """The database refuses connections and drops the ones it has, until the block ends."""
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def terminate_listener(admin_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(admin_dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'orch-listen'",
            name,
        )
        assert killed >= 1
    finally:
        await admin.close()


async def test_banner_while_the_database_is_down_then_recovery(
    orch: Orch, dsn: str, pg_admin_dsn: str, as_source: SourceOf
) -> None:
    await register_service(orch, "booking")
    app = console_on(await as_source(orch), first_pane="services")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "services")
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        await on_screen(app, "● live")

        async with database_down(pg_admin_dsn, dsn):
            text = await on_screen(app, LOST_EITHER, "✖ offline")
            assert "booking" in text  # the last data stays, ageing, under the banner
            assert banner.display
            assert app.connection_state == "offline"

        # Back by itself: the listener reconnects, the next fetch gets a fresh connection.
        await off_screen(app, LOST_EITHER, timeout=10)
        await on_screen(app, "● live")
        await register_service(orch, "venue")  # and live updates flow again
        await on_screen(app, "venue")


async def test_lost_listener_alone_shows_the_banner_until_it_reconnects(
    orch: Orch, dsn: str, pg_admin_dsn: str
) -> None:
    app = OrchConsole(orch, first_pane="services")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "services")
        seen: list[bool] = []
        assert orch.listener is not None
        orch.listener.on_connection_state(seen.append)
        await terminate_listener(pg_admin_dsn, dsn)
        # The listener retries after a second: the banner comes and goes with it.
        await eventually(lambda: seen[:1] == [False])
        await eventually(lambda: seen[:2] == [False, True], timeout=10)
        await off_screen(app, LOST)
        await register_service(orch, "venue")  # notifications missed meanwhile are refetched
        await on_screen(app, "venue")


async def test_listener_down_alone_is_a_lost_connection(orch: Orch) -> None:
    """Without notifications the screen can be stale: that too is worth a banner."""
    app = OrchConsole(orch, first_pane="services")
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "services")
        app.post_message(ListenerStateChanged(False))
        await on_screen(app, LOST, "notification connection closed", "✖ offline")
        app.post_message(ListenerStateChanged(True))
        await off_screen(app, LOST)
        await on_screen(app, "● live")


async def test_without_a_listener_the_console_polls(dsn: str, clock: ManualClock) -> None:
    orch = await Orch.open(Settings(database_url=dsn), clock=clock, listen=False)
    try:
        app = OrchConsole(orch, first_pane="services")
        async with app.run_test(size=SIZE):
            await pane_loaded(app, "services")
            await on_screen(app, "◌ polling")
            await register_service(orch, "venue")
            await on_screen(app, "venue", timeout=3)  # the retry pace, not the slow one
    finally:
        await orch.close()


def test_run_console_says_why_it_cannot_connect(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    assert run_console(settings, readonly=True, dsn=None) == 1
    error = capsys.readouterr().err
    assert error.startswith("orch console: cannot connect to PostgreSQL at 127.0.0.1:")
    assert error.count("\n") == 1


async def test_readonly_console_on_an_unmigrated_database(pg_admin_dsn: str) -> None:
    """A read-only console does not migrate: it says why it shows nothing, and quits cleanly."""
    name = f"orch_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        orch = await Orch.open(
            Settings(database_url=with_database(pg_admin_dsn, name)),
            schema=SchemaMode.UNCHECKED,
            start_discovery=False,
        )
        try:
            app = OrchConsole(orch, readonly=True)
            async with app.run_test(size=SIZE) as pilot:
                await on_screen(app, "Overview could not refresh", "schema is missing")
                await pilot.press("q")
            assert app.return_code in (0, None)
        finally:
            await orch.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from orchcore import ManualClock, Orch, Settings
from tests.support.database import (
    clone_database,
    create_template,
    drop_database,
    session_server,
    with_database,
)
from tests.support.http import SwitchableServer
from tests.support.sagas import env  # noqa: F401  (a fixture for the saga tests)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    with session_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    name = asyncio.run(create_template(pg_admin_dsn))
    yield name
    asyncio.run(drop_database(pg_admin_dsn, name))


@pytest.fixture
async def dsn(pg_admin_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = await clone_database(pg_admin_dsn, template_db)
    yield with_database(pg_admin_dsn, name)
    await drop_database(pg_admin_dsn, name)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def orch(dsn: str, clock: ManualClock) -> AsyncIterator[Orch]:
    engine = await Orch.open(Settings(database_url=dsn), clock=clock)
    yield engine
    await engine.close()


@pytest.fixture
async def http_server() -> AsyncIterator[SwitchableServer]:
    server = await SwitchableServer().start()
    yield server
    await server.stop()

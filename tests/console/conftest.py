"""Fixtures of the console suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from orchcore import Orch
from orchtui.source import ConsoleSource
from tests.console.sources import SOURCES, SourceOf, api_source


@pytest.fixture(params=SOURCES)
async def as_source(request: pytest.FixtureRequest) -> AsyncIterator[SourceOf]:
    """What the console is given for an engine a test set up: the engine itself, or the
    daemon's API over it under a platform engineer's token (the test runs once each)."""
    async with contextlib.AsyncExitStack() as served:

        async def source_of(engine: Orch) -> ConsoleSource:
            if request.param == "db":
                return engine
            return await served.enter_async_context(api_source(engine))

        yield source_of

"""The console's two sources for one test: the engine on the database, or the daemon's
API under a token (a real uvicorn server on a loopback port over the same engine).

A test that takes ``as_source`` (tests/console/conftest.py) runs once on each: it sets
the system up through the engine as before and hands the console
``await as_source(engine)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from orchcore import Orch
from orchcore.actors import local_operator
from orchcore.client.credentials import ApiCredentials
from orchcore.client.remote import RemoteOrch
from orchtui.app import OrchConsole
from orchtui.source import ConsoleSource
from tests.support.api import serve_api

SOURCES = ("db", "api")

#: The ``as_source`` fixture: the console's source for an engine the test set up.
SourceOf = Callable[[Orch], Awaitable[ConsoleSource]]


@contextlib.asynccontextmanager
async def api_source(orch: Orch, *, role: str = "platform_engineer") -> AsyncIterator[RemoteOrch]:
    """A RemoteOrch on a daemon API serving ``orch``, with a fresh token of ``role``
    named as the operator running the test (so audit rows name the same person)."""
    async with serve_api(orch) as url:
        secret, _ = await orch.tokens.create(name=local_operator(), role=role, actor="test")
        remote = await RemoteOrch.connect(ApiCredentials(url=url, token=secret))
        try:
            yield remote
        finally:
            await remote.close()


def console_on(source: ConsoleSource, **kwargs: Any) -> OrchConsole:
    """The console as `orch console` (or `orch console --api`) opens it on ``source``."""
    if isinstance(source, RemoteOrch):
        kwargs.setdefault("actor", source.actor)
    return OrchConsole(source, **kwargs)


def actor_of(source: ConsoleSource) -> str:
    """Who the audit log names for an action taken in a console on ``source``."""
    return source.actor if isinstance(source, RemoteOrch) else local_operator()

"""Telling a lost database (or daemon, over the API) from any other failure of a fetch."""

from __future__ import annotations

import asyncpg
import httpx

from orchcore.client.identity import DaemonUnreachable
from orchcore.facade import DatabaseUnavailable

#: Errors that mean the database cannot be reached right now (the pool or the server
#: is going away, refusing, or not answering), as opposed to a query that is wrong.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    DaemonUnreachable,  # over the API: the daemon, or its database, does not answer
    httpx.TransportError,
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # database not accepting connections
)


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


def describe_error(exc: BaseException) -> str:
    """One line for a banner: the message, or the error's type when it has none."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        # A read-only console does not migrate, so this is how a fresh database looks.
        text += "; the database's orch schema is missing or older than this orch"
    return text

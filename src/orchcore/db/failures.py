"""Which database errors pass (the server restarts, a connection drops) and which recur.

A statement that failed because the server went away, refused connections for a
moment or cancelled it is worth trying again once the server is back. Anything else
(data PostgreSQL refuses, a constraint, a bug in a statement) fails the same way
every time, and must end the work that met it instead of retrying it forever.
"""

from __future__ import annotations

import asyncpg

#: SQLSTATE classes of errors that pass: connection exceptions, transaction rollback
#: (serialization, deadlock), insufficient resources, operator intervention (shutdown,
#: cannot connect now, query cancelled), system errors.
_PASSING_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database was unreachable rather than the work wrong."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        # A pooled connection the server cut mid-statement, lent again before asyncpg
        # noticed ("cannot switch to state ..."): the next try gets another connection.
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _PASSING_CLASSES or _refusing_connections(exc, state)
    return False


def _refusing_connections(exc: asyncpg.PostgresError, state: str) -> bool:
    """A database closed to connections for now (``ALLOW_CONNECTIONS false`` while it is
    maintained): 55000, which otherwise means a statement's own mistake (currval before
    nextval), so it is told apart by what the server says."""
    return state == "55000" and "not currently accepting connections" in str(exc)


#: What an unreachable server raises, for ``except`` clauses that keep a loop alive.
UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresError,
)

"""The ground floor: connection pool, migrations, named queries, notifications."""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
    from orchcore.db.pool import Connection, Database
    from orchcore.db.queries import Queries

__all__ = ["Connection", "Database", "Queries"]

# Imported when first read (see orchcore.lazy): the CLI reads EmbeddedUnavailable from
# orchcore.db.embedded on every run, and that must not import asyncpg.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.db.pool": ("Connection", "Database"),
        "orchcore.db.queries": ("Queries",),
    },
)

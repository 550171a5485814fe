"""The ground floor: connection pool, migrations, named queries, notifications."""

from orchcore.db.pool import Connection, Database
from orchcore.db.queries import Queries

__all__ = ["Connection", "Database", "Queries"]

"""Every named query parses and plans against the migrated schema.

Preparing a statement makes PostgreSQL parse it and resolve every table, column,
function and parameter type without running it, so a typo or a column renamed by a
migration fails here rather than on the path that happens to run it. The files are
found by walking the package: a new ``queries.sql`` is covered without listing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import orchcore
from orchcore.bus.direct import queue_table
from orchcore.db import Queries
from orchcore.db.pool import connect
from orchcore.db.queries import parse_named_queries

PACKAGE_ROOT = Path(orchcore.__file__).parent
#: A PGMQ queue for the queries prepared per queue ({queue_table}, orchcore.bus.direct).
PROBE_QUEUE = "named_query_probe"


def query_packages() -> list[str]:
    """The package of every ``queries.sql`` under orchcore, e.g. ``orchcore.registry``."""
    found = sorted(PACKAGE_ROOT.rglob("queries.sql"))
    return [".".join(("orchcore", *path.parent.relative_to(PACKAGE_ROOT).parts)) for path in found]


def test_the_walk_finds_the_query_files() -> None:
    # Guards the walk itself: an empty parametrisation below would pass vacuously.
    assert {"orchcore", "orchcore.auth", "orchcore.db", "orchcore.registry"} <= set(
        query_packages()
    )


@pytest.mark.parametrize("package", query_packages())
async def test_every_named_query_prepares(dsn: str, package: str) -> None:
    queries = Queries(package)
    assert queries.names(), f"{package}/queries.sql holds no named query"
    failures: dict[str, str] = {}
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pgmq.create($1)", PROBE_QUEUE)
        for name in queries.names():
            text = getattr(queries, name).replace("{queue_table}", queue_table(PROBE_QUEUE))
            try:
                await conn.prepare(text)
            except Exception as error:  # every failing query reported at once, not the first
                failures[name] = f"{type(error).__name__}: {error}"
    finally:
        await conn.close()
    assert not failures, f"{package}/queries.sql: {failures}"


def test_loader_refuses_a_name_defined_twice() -> None:
    with pytest.raises(ValueError, match="'twice' defined twice"):
        parse_named_queries("-- name: twice\nSELECT 1\n\n-- name: twice\nSELECT 2\n")


def test_loader_refuses_an_empty_query() -> None:
    with pytest.raises(ValueError, match="'nothing' is empty"):
        parse_named_queries("-- name: nothing\n\n-- name: something\nSELECT 1\n")


def test_loader_names_the_file_of_an_unknown_query() -> None:
    with pytest.raises(AttributeError, match=r"no query named 'missing' in orchcore\.db/"):
        _ = Queries("orchcore.db").missing

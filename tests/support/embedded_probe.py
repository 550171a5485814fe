"""Start the embedded server in a process of its own, use it, stop it; print what happened.

The root tests run this under a clean environment (and, where ``unshare`` works, with
the system's PostgreSQL hidden), so nothing of the test process leaks into the start.
Usage: ``python -m tests.support.embedded_probe DATA_DIR``; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import asyncpg

from orchcore.db.embedded import EmbeddedPostgres


async def probe(data_dir: Path) -> dict[str, object]:
    server = EmbeddedPostgres(data_dir)
    dsn = server.acquire()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            version = await conn.fetchval("SELECT version()")
            # A PL/pgSQL block loads plpgsql.so from the server's lib/postgresql.
            await conn.execute("DO $$ BEGIN PERFORM 1; END $$")
        finally:
            await conn.close()
    finally:
        stopped = server.release()
    system = Path("/usr/lib/postgresql")
    return {
        "dsn": dsn,
        "version": version,
        "stopped": stopped,
        "binaries": str(server.bin_dir),
        "system_postgres_visible": system.is_dir() and any(system.iterdir()),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(Path(sys.argv[1])))))

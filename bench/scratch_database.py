"""Throw-away databases for benchmarks, and a registry filled in bulk.

Setup is not what a benchmark measures, so the registry is filled with plain
set-based SQL (thousands of rows in one statement) rather than through the
registry API, which would take minutes for 5,000 instances.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orchcore import Orch
from orchcore.db.migrate import migrate
from orchcore.db.pool import connect

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


@asynccontextmanager
async def scratch_database(admin_dsn: str) -> AsyncIterator[str]:
    """A migrated database named orch_bench_<random>, dropped afterwards."""
    name = f"orch_bench_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = with_database(admin_dsn, name)
        try:
            conn = await connect(dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def service_name(number: int) -> str:
    return f"svc-{number:04d}"


_INSERT_SERVICES = """
INSERT INTO microservices (service_name, service_type, deployment_environment, base_url,
                           health_check, load_balancing)
SELECT format('svc-%s', lpad(n::text, 4, '0')), 'api', 'production',
       format('http://svc-%s.internal', n), '{}'::jsonb, 'round_robin'
FROM generate_series(1, $1::int) AS n
"""

# Every instance healthy; weight 1..k so the weighted strategy has real work to do.
_INSERT_INSTANCES = """
INSERT INTO service_instances (microservice_id, instance_id, ip_address, port, status,
                               version, metadata)
SELECT s.id, s.service_name || '-' || i,
       '10.0.0.0'::inet + substr(s.service_name, 5)::int, 8000 + i, 'healthy', '1.0.0',
       jsonb_build_object('weight', i)
FROM microservices s CROSS JOIN generate_series(1, $1::int) AS i
"""


async def fill_registry(dsn: str, services: int, instances_per_service: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(_INSERT_SERVICES, services)
            await conn.execute(_INSERT_INSTANCES, instances_per_service)
        await conn.execute("ANALYZE microservices; ANALYZE service_instances")
    finally:
        await conn.close()


async def register_loopback_service(
    orch: Orch, name: str, port: int, *, scheme: str = "http"
) -> None:
    """``name`` with one instance, ``<name>-0`` on a loopback port (called over
    ``scheme``), healthy by a TTL heartbeat a day long (nothing expires it during a
    run; no checker is needed)."""
    await orch.registry.register_service(
        {
            "service_name": name,
            "service_type": "api",
            "deployment_environment": "staging",
            "base_url": f"{scheme}://127.0.0.1:{port}",
            "health_check": {"kind": "ttl", "ttl_seconds": 86_400},
        },
        actor="bench",
    )
    await orch.registry.register_instance(
        name,
        {"instance_id": f"{name}-0", "ip_address": "127.0.0.1", "port": port, "version": "1.0.0"},
        actor="bench",
    )
    await orch.registry.heartbeat(name, f"{name}-0", actor="bench")


async def register_caller(orch: Orch, name: str) -> None:
    """``name`` as a service without instances: calls may come from it (the call path
    refuses sources nobody registered)."""
    await orch.registry.register_service(
        {"service_name": name, "service_type": "api", "deployment_environment": "staging"},
        actor="bench",
    )

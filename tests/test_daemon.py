"""Daemons as real processes: shared health checking, takeover after SIGKILL, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from orchcore import Orch
from orchcore.db.migrate import available_migrations
from tests.support.daemons import DaemonProcess
from tests.support.database import drop_database, with_database
from tests.support.http import SwitchableServer
from tests.support.polling import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def servers() -> AsyncIterator[list[SwitchableServer]]:
    started = [await SwitchableServer().start() for _ in range(4)]
    yield started
    for server in started:
        await server.stop()


async def register(orch: Orch, servers: list[SwitchableServer], **check: float) -> None:
    await orch.registry.register_service(
        {
            "service_name": "venue",
            "service_type": "api",
            "deployment_environment": "staging",
            "health_check": {"interval_seconds": 0.5, "timeout_seconds": 0.3, **check},
        },
        actor="t",
    )
    for i, server in enumerate(servers):
        await orch.registry.register_instance(
            "venue",
            {
                "instance_id": f"venue-{i}",
                "ip_address": "127.0.0.1",
                "port": server.port,
                "version": "1",
            },
            actor="t",
        )


async def test_two_daemons_share_checks_without_double_checking(
    dsn: str, orch: Orch, servers: list[SwitchableServer]
) -> None:
    await register(orch, servers)
    daemons = [DaemonProcess(dsn, "a"), DaemonProcess(dsn, "b")]
    try:
        await asyncio.gather(*(d.start() for d in daemons))
        await eventually(lambda: all(s.count("/health") >= 8 for s in servers), timeout=30)
    finally:
        for daemon in daemons:
            await daemon.ensure_stopped()
    for server in servers:
        arrivals = [r.at for r in server.requests]
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        # One check per interval (0.5 s): two daemons checking the same instance
        # in one interval would show as a gap far below the interval.
        assert min(gaps) > 0.3, gaps
    instances = await orch.registry.list_instances("venue")
    assert {i.status for i in instances} == {"healthy"}


async def test_sigkilled_daemons_share_is_taken_over(
    dsn: str, orch: Orch, servers: list[SwitchableServer]
) -> None:
    await register(orch, servers[:1], interval_seconds=1.0, timeout_seconds=1.0)
    server = servers[0]
    first = DaemonProcess(dsn, "first")
    try:
        await first.start()
        await eventually(lambda: server.count("/health") >= 1, timeout=20)
        await server.set_mode("hang")  # the next check hangs holding its lease
        hung_at = server.count("/health")
        await eventually(lambda: server.count("/health") > hung_at, timeout=20)
        await first.kill()
        killed_at = time.monotonic()
        await server.set_mode("ok")
        taken_over = DaemonProcess(dsn, "survivor")
        await taken_over.start()
        seen = server.count("/health")
        await eventually(lambda: server.count("/health") > seen, timeout=30)
        waited = time.monotonic() - killed_at
        # lease = timeout (1 s) + 5 s margin; interval 1 s; plus start-up of the survivor
        assert waited < 1 + 1 + 5 + 5, waited
        assert "survivor" in server.requests[-1].headers["user-agent"]
        await taken_over.ensure_stopped()
    finally:
        await first.ensure_stopped()


async def test_sigterm_stops_gracefully(
    dsn: str, orch: Orch, servers: list[SwitchableServer]
) -> None:
    await register(orch, servers[:1])
    daemon = DaemonProcess(dsn, "graceful")
    try:
        await daemon.start()
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{daemon.listen}/readyz")).status_code == 200
        members = await orch.daemons.list()
        assert [(m.daemon_name, m.alive) for m in members] == [("graceful", True)]
        await eventually(lambda: servers[0].count("/health") >= 1, timeout=20)
        assert await daemon.terminate() == 0
    finally:
        await daemon.ensure_stopped()
    member = (await orch.daemons.list())[0]
    assert member.stopped_at is not None
    assert not member.alive
    leased = await orch.db.fetchval(
        "SELECT count(*) FROM service_instances WHERE check_lease_owner IS NOT NULL"
    )
    assert leased == 0
    assert daemon.events("daemon stopped")


async def test_role_flags_leave_out_what_they_name(dsn: str) -> None:
    daemon = DaemonProcess(dsn, "api-only", "--no-health-checks", "--no-workflows", "--no-push")
    full = DaemonProcess(dsn, "full")
    try:
        await asyncio.gather(daemon.start(), full.start())
        (started,) = daemon.events("daemon started")
        assert started["roles"] == ["bus-upkeep", "api"]
        (started,) = full.events("daemon started")
        assert started["roles"] == ["health-checks", "workflows", "push", "bus-upkeep", "api"]
    finally:
        await daemon.ensure_stopped()
        await full.ensure_stopped()


async def test_taken_port_fails_with_one_line(dsn: str) -> None:
    import socket
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchcore.cli.main",
            "--dsn",
            dsn,
            "daemon",
            "--listen",
            f"127.0.0.1:{port}",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().strip().splitlines()[-1] == (
        f"orch: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


async def test_concurrent_migrations_do_not_race(pg_admin_dsn: str) -> None:
    """Several processes migrating one empty database at once: each migration applied once."""
    from tests.support.cli import run_orch

    admin = await asyncpg.connect(pg_admin_dsn)
    name = f"orch_mig_{int(time.time() * 1000) % 10**9}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = with_database(pg_admin_dsn, name)
    try:
        results = await asyncio.gather(
            *(run_orch(dsn, "db", "migrate", "--json") for _ in range(4))
        )
        assert [r.code for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
        applied = sorted(name for r in results for name in r.json()["applied"])
        expected = [f"{m.version}_{m.name}" for m in available_migrations()]
        assert applied == expected  # each applied exactly once, by one of the processes
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("SELECT count(*) FROM orch_schema_migrations") == len(expected)
        await conn.close()
    finally:
        await drop_database(pg_admin_dsn, name)

"""The bus's own connections: the leased ones of the hot path and the LISTEN one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from orchcore import Orch
from orchcore.bus.leases import LeasedConnections
from tests.support.polling import eventually

ACTOR = "test"


async def test_leased_connections_go_back_to_the_pool_when_idle_or_closed(orch: Orch) -> None:
    pool = orch.db.pool
    leases = LeasedConnections(orch.db, keep=2, idle_seconds=0.2)
    await asyncio.gather(*(leases.fetchval("SELECT pg_sleep(0.05)") for _ in range(3)))
    assert len(leases._idle) == 2  # kept two, gave the third back
    await eventually(lambda: not leases._idle, timeout=5, message="idle leases kept")
    await eventually(lambda: pool.get_idle_size() == pool.get_size(), timeout=5)
    await leases.fetchval("SELECT 1")
    await leases.close()
    assert pool.get_idle_size() == pool.get_size()


async def test_a_failed_statement_does_not_keep_its_connection(orch: Orch) -> None:
    leases = LeasedConnections(orch.db, keep=2)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await leases.fetchval("SELECT 1/0")
    assert leases._idle == []
    assert await leases.fetchval("SELECT 2") == 2
    await leases.close()


async def test_the_hot_path_survives_its_connection_being_killed(orch: Orch) -> None:
    await orch.bus.create_queue({"queue_name": "q"}, actor=ACTOR)
    message = {"queue_name": "q", "message_type": "t", "message_payload": {}}
    await orch.bus.send(message, producer=None, actor=ACTOR)
    await orch.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name = 'orch' AND state = 'idle'"
    )

    async def sends() -> bool:
        try:
            await orch.bus.send(message, producer=None, actor=ACTOR)
        except Exception:
            return False  # the statement on the killed connection fails, as the pool's would
        return True

    await eventually(sends, timeout=10, message="the bus never recovered")
    assert (await orch.bus.metrics("q")).total_messages >= 2


async def test_a_waiting_consumer_is_woken_after_the_listen_connection_was_killed(
    orch: Orch,
) -> None:
    await orch.bus.create_queue({"queue_name": "q"}, actor=ACTOR)
    orch.bus.wakeups.safety_seconds = 120
    first = asyncio.create_task(orch.bus.receive("q", {"wait_seconds": 0.2}, consumer=None))
    assert (await first).messages == []
    assert orch.bus.wakeups.is_listening("q")
    await orch.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'orch-bus-listen' AND datname = current_database()"
    )
    await eventually(lambda: not orch.bus.wakeups.is_listening("q"), timeout=5)
    waiting = asyncio.create_task(orch.bus.receive("q", {"wait_seconds": 60}, consumer=None))
    await eventually(lambda: orch.bus.wakeups.is_listening("q"), timeout=5)
    sent = await orch.bus.send(
        {"queue_name": "q", "message_type": "t", "message_payload": {}}, producer=None, actor=ACTOR
    )
    got = await asyncio.wait_for(waiting, timeout=10)
    assert [m.message_id for m in got.messages] == [sent.message_id]

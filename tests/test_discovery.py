"""Discovery: strategies, health-awareness and the NOTIFY-fed cache."""

from __future__ import annotations

import contextlib
from collections import Counter
from urllib.parse import urlsplit

import asyncpg
import pytest

from orchcore import ManualClock, NoHealthyInstanceError, NotFoundError, Orch, Settings
from tests.support.polling import eventually
from tests.support.registry import mark

ACTOR = "test"


async def service_with_instances(
    orch: Orch, n: int, *, weights: list[int] | None = None, name: str = "photographer"
) -> list[str]:
    await orch.registry.register_service(
        {"service_name": name, "service_type": "api", "deployment_environment": "production"},
        actor=ACTOR,
    )
    ids = []
    for i in range(n):
        metadata = {"weight": weights[i]} if weights else {}
        inst = await orch.registry.register_instance(
            name,
            {
                "instance_id": f"{name}-{i}",
                "ip_address": "127.0.0.1",
                "port": 10000 + i,
                "version": "1",
                "metadata": metadata,
            },
            actor=ACTOR,
        )
        ids.append(inst.instance_id)
    return ids


async def healthy_seen(orch: Orch, service: str, n: int) -> bool:
    return len(orch.discovery.healthy_instances(service)) == n


async def test_round_robin_is_exact(orch: Orch) -> None:
    ids = await service_with_instances(orch, 4)
    for instance_id in ids:
        await mark(orch, instance_id, "healthy")
    await eventually(lambda: healthy_seen(orch, "photographer", 4))
    k = 25
    picks = Counter(
        [
            (await orch.discovery.get_healthy_instance("photographer")).instance_id
            for _ in range(k * 4)
        ]
    )
    assert picks == {instance_id: k for instance_id in ids}


async def test_weighted_follows_weights_exactly(orch: Orch) -> None:
    ids = await service_with_instances(orch, 3, weights=[1, 2, 5])
    for instance_id in ids:
        await mark(orch, instance_id, "healthy")
    await eventually(lambda: healthy_seen(orch, "photographer", 3))
    picks = Counter(
        [
            (await orch.discovery.get_healthy_instance("photographer", "weighted")).instance_id
            for _ in range(80)
        ]
    )
    assert picks == {ids[0]: 10, ids[1]: 20, ids[2]: 50}


async def test_least_connections_never_picks_the_busiest(orch: Orch) -> None:
    """Power of two choices: the less busy of two distinct instances, so the busiest
    instance is never chosen while another has fewer calls in flight."""
    ids = await service_with_instances(orch, 3)
    for instance_id in ids:
        await mark(orch, instance_id, "healthy")
    await eventually(lambda: healthy_seen(orch, "photographer", 3))
    async with contextlib.AsyncExitStack() as stack:
        busy = await stack.enter_async_context(orch.discovery.lease("photographer", "round_robin"))
        again = await stack.enter_async_context(orch.discovery.lease("photographer", "round_robin"))
        assert again.instance_id != busy.instance_id
        await stack.enter_async_context(orch.discovery.lease("photographer", "round_robin"))
        await stack.enter_async_context(orch.discovery.lease("photographer", "round_robin"))
        # busy now has 2 calls in flight, the other two 1 each
        assert orch.discovery.in_flight(busy) == 2
        picks = Counter(
            [
                (
                    await orch.discovery.get_healthy_instance("photographer", "least_connections")
                ).instance_id
                for _ in range(200)
            ]
        )
    assert busy.instance_id not in picks
    assert len(picks) == 2
    assert orch.discovery.in_flight(busy) == 0


async def test_never_returns_an_instance_that_is_not_healthy(orch: Orch) -> None:
    ids = await service_with_instances(orch, 5)
    await mark(orch, ids[0], "healthy")
    await mark(orch, ids[1], "healthy")
    await mark(orch, ids[2], "healthy")
    await mark(orch, ids[2], "unhealthy")
    await mark(orch, ids[3], "healthy")
    await mark(orch, ids[3], "critical")
    await eventually(lambda: healthy_seen(orch, "photographer", 2))
    for strategy in ("round_robin", "least_connections", "weighted"):
        seen = {
            (await orch.discovery.get_healthy_instance("photographer", strategy)).instance_id  # type: ignore[arg-type]
            for _ in range(50)
        }
        assert seen == {ids[0], ids[1]}


async def test_no_healthy_instance_names_service_and_states(orch: Orch) -> None:
    ids = await service_with_instances(orch, 3)
    await mark(orch, ids[0], "healthy")
    await mark(orch, ids[0], "unhealthy")

    # The cache learns of the service by a notification: it may not know it yet.
    def unhealthy_seen() -> bool:
        cached = orch.discovery._by_name.get("photographer")
        return cached is not None and cached.counts.get("unhealthy") == 1

    await eventually(unhealthy_seen)
    with pytest.raises(NoHealthyInstanceError) as caught:
        await orch.discovery.get_healthy_instance("photographer")
    assert caught.value.service == "photographer"
    assert caught.value.counts == {"starting": 2, "unhealthy": 1}
    assert str(caught.value) == (
        "no healthy instance of service 'photographer' (2 starting, 1 unhealthy)"
    )
    with pytest.raises(NotFoundError):
        await orch.discovery.get_healthy_instance("nonexistent")


async def test_another_process_change_reaches_the_cache(
    orch: Orch, dsn: str, clock: ManualClock
) -> None:
    """A second engine (as another process would) changes health; our cache follows."""
    ids = await service_with_instances(orch, 2)
    await mark(orch, ids[0], "healthy")
    await eventually(lambda: healthy_seen(orch, "photographer", 1))
    reloads_before = orch.discovery.reloads

    other = await Orch.open(
        Settings(database_url=dsn), clock=clock, listen=False, start_discovery=False
    )
    try:
        await mark(other, ids[1], "healthy")
        await eventually(lambda: healthy_seen(orch, "photographer", 2), timeout=2)
        await mark(other, ids[0], "unhealthy")
        await eventually(lambda: healthy_seen(orch, "photographer", 1), timeout=2)
    finally:
        await other.close()
    assert orch.discovery.reloads > reloads_before
    # Served from the cache: lookups issue no queries.
    picked = {
        (await orch.discovery.get_healthy_instance("photographer")).instance_id for _ in range(10)
    }
    assert picked == {ids[1]}


async def test_lookup_without_listener_reads_database(dsn: str, clock: ManualClock) -> None:
    engine = await Orch.open(Settings(database_url=dsn), clock=clock, listen=False)
    try:
        ids = await service_with_instances(engine, 1, name="payment")
        with pytest.raises(NoHealthyInstanceError):
            await engine.discovery.get_healthy_instance("payment")
        await mark(engine, ids[0], "healthy")
        await clock.advance(2)  # older than the uncached max age
        assert (await engine.discovery.get_healthy_instance("payment")).instance_id == ids[0]
    finally:
        await engine.close()


async def test_reconnect_triggers_full_refresh(orch: Orch, pg_admin_dsn: str, dsn: str) -> None:
    """Kill the LISTEN connection server-side: changes made meanwhile still arrive."""
    assert orch.listener is not None
    ids = await service_with_instances(orch, 1)
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        database = urlsplit(dsn).path.lstrip("/")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'orch-listen'",
            database,
        )
        await eventually(lambda: not orch.listener.connected, timeout=10)  # type: ignore[union-attr]
        await mark(orch, ids[0], "healthy")  # NOTIFY sent while nobody listens
        await eventually(lambda: healthy_seen(orch, "photographer", 1), timeout=10)
        assert orch.listener.connected
    finally:
        await admin.close()

"""Health checking: a real HTTP server flipping behaviour, a driven clock."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from orchcore import ManualClock, Orch
from orchcore.registry.health import CheckState, Probe, evaluate
from orchcore.registry.models import HealthCheckConfig
from tests.support.http import SwitchableServer

ACTOR = "test"


async def register(orch: Orch, port: int, *, kind: str = "http", **check: object) -> None:
    await orch.registry.register_service(
        {
            "service_name": "catering",
            "service_type": "api",
            "deployment_environment": "development",
            "health_check": {"kind": kind, "interval_seconds": 10, "timeout_seconds": 1, **check},
        },
        actor=ACTOR,
    )
    await orch.registry.register_instance(
        "catering",
        {"instance_id": "catering-1", "ip_address": "127.0.0.1", "port": port, "version": "1"},
        actor=ACTOR,
    )


async def status(orch: Orch) -> str:
    return (await orch.registry.get_instance("catering-1")).status


async def test_flip_200_500_refused_200(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port)
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        assert await checker.run_once() == 1
        assert await status(orch) == "healthy"
        assert http_server.count("/health") == 1

        await http_server.set_mode("error")
        for expected_failures in (1, 2):
            await clock.advance(10)
            await checker.run_once()
            inst = await orch.registry.get_instance("catering-1")
            assert (inst.status, inst.health_check_failures) == ("healthy", expected_failures)
        await clock.advance(10)
        await checker.run_once()
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "unhealthy"
        assert inst.last_check_output == "HTTP 500 Internal Server Error"

        await http_server.set_mode("down")
        await clock.advance(10)
        await checker.run_once()
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "unhealthy"
        assert inst.health_check_failures == 4
        assert inst.last_check_output is not None
        assert inst.last_check_output.startswith("connection failed")

        await http_server.set_mode("ok")
        await clock.advance(10)
        await checker.run_once()
        assert await status(orch) == "healthy"

        events = await orch.registry.instance_events("catering-1")
        assert [(e.from_status, e.to_status) for e in reversed(events)] == [
            (None, "starting"),
            ("starting", "healthy"),
            ("healthy", "unhealthy"),
            ("unhealthy", "healthy"),
        ]
        assert "3 failed checks in a row: HTTP 500" in events[1].reason
        assert all(e.actor == "daemon:t" for e in events[:3])
    finally:
        await checker.close()


async def test_not_due_is_not_checked(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port)
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        assert await checker.run_once() == 1
        await clock.advance(9.9)
        assert await checker.run_once() == 0
        await clock.advance(0.1)
        assert await checker.run_once() == 1
    finally:
        await checker.close()


async def test_timeout_fails_the_check(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port, failures_before_critical=1, timeout_seconds=0.2)
    await http_server.set_mode("hang")
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        await checker.run_once()
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "unhealthy"
        assert inst.last_check_output == "timed out after 0.2s"
    finally:
        await checker.close()


async def test_429_warns_without_failing(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port, failures_before_critical=1)
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        await checker.run_once()
        await http_server.set_mode("throttle")
        await clock.advance(10)
        await checker.run_once()
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "healthy"
        assert inst.last_check_result == "warning"
        assert inst.health_check_failures == 0
    finally:
        await checker.close()


async def test_ttl_lapse_makes_unhealthy_and_heartbeat_heals(
    orch: Orch, clock: ManualClock
) -> None:
    await register(orch, 1, kind="ttl", ttl_seconds=30)
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        await checker.run_once()  # not lapsed: nothing happens, not even healthy
        assert await status(orch) == "starting"

        await orch.registry.heartbeat("catering", "catering-1", actor="svc")
        assert await status(orch) == "healthy"

        await clock.advance(29)
        await orch.registry.heartbeat("catering", "catering-1", actor="svc")
        await clock.advance(29)
        await checker.run_once()
        assert await status(orch) == "healthy"

        await clock.advance(1)
        assert await checker.run_once() == 1
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "unhealthy"
        assert inst.last_check_output is not None and "TTL of 30s lapsed" in inst.last_check_output

        await orch.registry.heartbeat("catering", "catering-1", actor="svc")
        assert await status(orch) == "healthy"
    finally:
        await checker.close()


async def test_unhealthy_turns_critical_then_deregistered(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port, failures_before_critical=1)
    await http_server.set_mode("error")
    checker = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:t")
    try:
        await checker.run_once()
        assert await status(orch) == "unhealthy"
        for _ in range(6):  # 60 s: critical_after (default 60 s)
            await clock.advance(10)
            await checker.run_once()
        assert await status(orch) == "critical"
        for _ in range(53):  # 590 s in all: still critical
            await clock.advance(10)
            await checker.run_once()
        assert await status(orch) == "critical"
        await clock.advance(10)
        await checker.run_once()
        inst = await orch.registry.get_instance("catering-1")
        assert inst.status == "deregistered"
        assert inst.deregistered_at == clock.now()
        await clock.advance(10)
        assert await checker.run_once() == 0  # no longer checked
    finally:
        await checker.close()


async def test_two_checkers_never_check_one_instance_twice_per_interval(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port)
    first = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:a")
    second = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:b")
    try:
        for _ in range(5):
            import asyncio

            counts = await asyncio.gather(first.run_once(), second.run_once())
            assert sorted(counts) == [0, 1]
            await clock.advance(10)
        assert http_server.count("/health") == 5
    finally:
        await first.close()
        await second.close()


async def test_dead_checkers_lease_is_taken_over(
    orch: Orch, clock: ManualClock, http_server: SwitchableServer
) -> None:
    await register(orch, http_server.port)
    dead_id = uuid.uuid4()
    # A checker claims and then dies before recording: simulate by claiming only.
    from orchcore.registry.health import LEASE_MARGIN_SECONDS, Q

    claimed = await orch.db.fetch(
        Q.claim_due_checks, clock.now(), dead_id, 10, LEASE_MARGIN_SECONDS
    )
    assert len(claimed) == 1
    survivor = orch.health_checker(checker_id=uuid.uuid4(), actor="daemon:b")
    try:
        await clock.advance(1 + LEASE_MARGIN_SECONDS - 0.1)
        assert await survivor.run_once() == 0  # lease still held
        await clock.advance(10)  # one interval later the lease has long expired
        assert await survivor.run_once() == 1
        assert await status(orch) == "healthy"
    finally:
        await survivor.close()


# -- the pure state machine ----------------------------------------------------------

CONFIG = HealthCheckConfig(success_before_passing=2, failures_before_critical=2)
T0 = ManualClock().now()


@pytest.mark.parametrize(
    ("state", "probe", "expected_status"),
    [
        (CheckState("starting", 0, 0, None), "passing", "starting"),
        (CheckState("starting", 1, 0, None), "passing", "healthy"),
        (CheckState("healthy", 5, 0, None), "failing", "healthy"),
        (CheckState("healthy", 0, 1, None), "failing", "unhealthy"),
        (CheckState("unhealthy", 0, 5, T0), "passing", "unhealthy"),
        (CheckState("unhealthy", 1, 0, T0), "passing", "healthy"),
        (CheckState("critical", 1, 0, T0), "passing", "healthy"),
        (CheckState("healthy", 3, 0, None), "warning", "healthy"),
        (CheckState("starting", 0, 0, None), "warning", "starting"),
    ],
)
def test_evaluate(state: CheckState, probe: str, expected_status: str) -> None:
    verdict = evaluate(state, Probe(probe, "x"), CONFIG, T0)  # type: ignore[arg-type]
    assert verdict.status == expected_status
    assert (verdict.reason is not None) == (expected_status != state.status)


def test_evaluate_time_progression() -> None:
    state = CheckState("unhealthy", 0, 3, T0)
    assert (
        evaluate(state, Probe("failing", "x"), CONFIG, T0 + timedelta(seconds=59)).status
        == "unhealthy"
    )
    assert (
        evaluate(state, Probe("failing", "x"), CONFIG, T0 + timedelta(seconds=60)).status
        == "critical"
    )
    crit = CheckState("critical", 0, 9, T0)
    assert (
        evaluate(crit, Probe("failing", "x"), CONFIG, T0 + timedelta(seconds=600)).status
        == "deregistered"
    )

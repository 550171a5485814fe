"""Side tasks never die quietly: a lease renewal that raises is restarted (the runner
does not go on driving with leases nobody renews), a listener whose handler raises
keeps listening."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from orchcore import Orch
from orchcore.saga.runner import SagaRunner
from orchcore.supervision import TaskSupervisor
from tests.support.polling import eventually
from tests.support.sagas import Env


class RenewalThatTripsOnce(SagaRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tripped = False

    async def renew_leases(self) -> None:
        if not self.tripped:
            self.tripped = True
            raise RuntimeError("a bug in lease renewal")
        await super().renew_leases()


async def test_a_lease_renewal_that_crashes_is_restarted(env: Env) -> None:
    await env.runner.stop()
    env.orch.workflows.attach_runner(None)
    runner = RenewalThatTripsOnce(env.orch, owner="r", actor="daemon:r", lease_seconds=30)
    env.orch.workflows.attach_runner(runner)
    env.services["venue"].delay = 3.0  # the first step stays in flight
    task = asyncio.create_task(runner.run_forever())
    try:
        workflow_id = await env.start()
        first = (await env.orch.workflows.status(workflow_id)).workflow.lease_until
        assert first is not None
        await env.clock.advance(10)  # renewal is due: it raises
        await eventually(lambda: runner.supervisor.crashes["saga-leases"] == 1)
        await eventually(lambda: runner.supervisor.running("saga-leases"))  # restarted

        async def renewed() -> bool:
            await env.clock.advance(0.5)
            status = await env.orch.workflows.status(workflow_id)
            lease = status.workflow.lease_until
            return lease is not None and lease > first

        await eventually(renewed, message="the lease renewed after the crash")
    finally:
        await runner.stop(grace_seconds=5)
        await task
        env.orch.workflows.attach_runner(None)


async def test_the_supervisor_restarts_a_crashed_task() -> None:
    supervisor = TaskSupervisor()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("first run fails")
        await asyncio.Event().wait()

    supervisor.start("flaky", flaky)
    await eventually(lambda: runs == 2)
    assert supervisor.crashes["flaky"] == 1
    assert supervisor.running("flaky")
    await supervisor.stop()
    assert not supervisor.running("flaky")


async def test_a_listener_whose_handlers_raise_keeps_listening(orch: Orch, dsn: str) -> None:
    listener = orch.listener
    assert listener is not None
    heard: list[dict[str, Any]] = []

    def broken_handler(message: dict[str, Any]) -> None:
        raise RuntimeError("a subscriber's bug")

    def broken_on_reconnect() -> None:
        raise RuntimeError("a reconnect handler's bug")

    listener.subscribe(broken_handler)
    listener.subscribe(heard.append)
    listener.on_reconnect(broken_on_reconnect)
    listener.on_connection_state(lambda connected: 1 / 0)
    admin = await asyncpg.connect(dsn)
    try:
        database = urlsplit(dsn).path.lstrip("/")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'orch-listen'",
            database,
        )
        await eventually(lambda: not listener.connected, message="the loss noticed")
        await eventually(lambda: listener.connected, timeout=15, message="reconnected")
        await admin.execute("""SELECT pg_notify('orch', '{"topic": "probe"}')""")
        await eventually(lambda: any(m.get("topic") == "probe" for m in heard))
    finally:
        await admin.close()

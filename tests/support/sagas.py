"""Shared saga test setup: participants registered as services, a booking saga, a runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchcore import ManualClock, Orch
from orchcore.saga.runner import SagaRunner
from tests.support.participant import Participant, participants
from tests.support.polling import eventually
from tests.support.registry import mark

SERVICES = ("venue", "catering", "photographer", "payment", "notification")
#: The service that starts the saga tests' workflows (their calls come from it).
INITIATOR = "booking"


def call_step(
    name: str,
    order: int,
    service: str,
    endpoint: str,
    *,
    compensate: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "name": name,
        "type": "service_call",
        "order": order,
        "service_name": service,
        "endpoint": endpoint,
        "input_mapping": {"wedding_id": "wedding_id"},
        "output_mapping": {f"{name}_id": "id"},
        "retry_policy": {"max_retries": 2, "initial_delay": 100, "backoff_multiplier": 2},
        "timeout_seconds": 5,
        **extra,
    }
    if compensate:
        step["compensation_action"] = {
            "service_name": service,
            "endpoint": compensate,
            "input_mapping": {"id": f"{name}_id"},
            "retry_policy": {"max_retries": 1, "initial_delay": 100},
        }
    return step


BOOKING = {
    "name": "booking",
    "version": "1.0.0",
    "timeout_minutes": 30,
    "steps": [
        call_step("reserve_venue", 1, "venue", "/reservations", compensate="/reservations/cancel"),
        call_step("order_catering", 2, "catering", "/orders", compensate="/orders/cancel"),
        call_step("charge_deposit", 3, "payment", "/charges", compensate="/refunds"),
        call_step("confirm", 4, "notification", "/notifications"),
    ],
}


class Env:
    def __init__(
        self, orch: Orch, clock: ManualClock, services: dict[str, Participant], runner: SagaRunner
    ) -> None:
        self.orch = orch
        self.clock = clock
        self.services = services
        self.runner = runner

    async def start(self, definition: str = "booking", **request: Any) -> str:
        response = await self.orch.workflows.start(
            {
                "workflow_name": definition,
                "initiating_service": INITIATOR,
                "context_data": {"wedding_id": "w-1"},
                **request,
            },
            actor="planner",
        )
        return str(response.workflow_id)

    async def status(self, workflow_id: str) -> str:
        return (await self.orch.workflows.status(workflow_id)).workflow.current_status

    async def until(self, workflow_id: str, *statuses: str, timeout: float = 15) -> None:
        async def reached() -> bool:
            return await self.status(workflow_id) in statuses

        await eventually(
            reached, timeout=timeout, message=f"workflow {workflow_id} to reach {statuses}"
        )

    async def advance_until(
        self, workflow_id: str, *statuses: str, step: float = 0.5, limit: int = 400
    ) -> None:
        """Move the clock forward in small steps until the workflow gets there."""
        for _ in range(limit):
            if await self.status(workflow_id) in statuses:
                return
            await self.clock.advance(step)
            await asyncio.sleep(0.01)
        status = await self.orch.workflows.status(workflow_id)
        story = [(e.event, e.step_name, e.actor) for e in status.execution_timeline]
        raise AssertionError(
            f"{workflow_id} stuck in {status.workflow.current_status}; its timeline: {story}"
        )


async def register_participants(orch: Orch, services: dict[str, Participant]) -> None:
    """Each participant as a service with one healthy instance, and the initiator."""
    await orch.registry.register_service(
        {"service_name": INITIATOR, "service_type": "api", "deployment_environment": "staging"},
        actor="t",
    )
    for name, participant in services.items():
        await orch.registry.register_service(
            {"service_name": name, "service_type": "api", "deployment_environment": "staging"},
            actor="t",
        )
        await orch.registry.register_instance(
            name,
            {
                "instance_id": f"{name}-1",
                "ip_address": "127.0.0.1",
                "port": participant.port,
                "version": "1",
            },
            actor="t",
        )
        await mark(orch, f"{name}-1", "healthy")
    await orch.discovery.refresh_all()


@pytest.fixture
async def env(orch: Orch, clock: ManualClock) -> AsyncIterator[Env]:
    async with participants(*SERVICES) as services:
        await register_participants(orch, services)
        await orch.workflow_definitions.register(BOOKING, actor="t")
        runner = SagaRunner(
            orch, owner="runner-a", actor="daemon:a", lease_seconds=30, poll_seconds=0.2
        )
        orch.workflows.attach_runner(runner)
        if orch.listener is not None:
            orch.listener.subscribe(runner.on_notification)
        task = asyncio.create_task(runner.run_forever())
        try:
            yield Env(orch, clock, services, runner)
        finally:
            await runner.stop(grace_seconds=2)
            await asyncio.wait_for(task, 5)  # stop() ends the claim loop

"""What the console shows of the engine's promises when things go wrong: a step whose
outcome is unknown, an operator's action queued behind a call in flight, a workflow whose
drive kept crashing. Real participants, real PostgreSQL, the console under Pilot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchcore.saga.runner import SagaRunner
from orchtui.app import OrchConsole
from orchtui.panes.workflow_detail import WorkflowDetailPane
from orchtui.screens import ConfirmMutationScreen
from tests.console.helpers import SIZE, on_screen, pane_loaded
from tests.console.sources import SourceOf, console_on
from tests.console.test_workflows import OPERATOR, confirm_with_reason
from tests.support.polling import eventually
from tests.support.sagas import BOOKING, Env, call_step

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_OPERATOR", OPERATOR)


def charge_that_times_out(name: str, **definition: Any) -> dict[str, Any]:
    """The booking saga whose payment step gives up on an answer after 0.3 s."""
    charge = call_step(
        "charge_deposit",
        3,
        "payment",
        "/charges",
        compensate="/refunds",
        timeout_seconds=0.3,
        retry_policy={"max_retries": 0, "initial_delay": 100},
    )
    steps = [*BOOKING["steps"][:2], charge, BOOKING["steps"][3]]
    return {**BOOKING, "name": name, "steps": steps, **definition}


async def open_detail(app: OrchConsole, pilot: Any, step: str) -> WorkflowDetailPane:
    await pane_loaded(app, "workflows")
    await pilot.press("enter")
    await pane_loaded(app, "workflow")
    pane = app.active_pane
    assert isinstance(pane, WorkflowDetailPane)
    await eventually(lambda: pane.steps_table.selected_key == step)
    return pane


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
async def test_a_step_nothing_undid_reads_uncertain_and_says_what_to_do(
    env: Env, monkeypatch: pytest.MonkeyPatch, no_color: bool, as_source: SourceOf
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    definition = charge_that_times_out("no-undo", compensation_strategy="none")
    await env.orch.workflow_definitions.register(definition, actor="t")
    env.services["payment"].stall_after_effect["/charges"] = 2.0  # charged; answer too late
    workflow_id = await env.start("no-undo", correlation_id="wed-unsure")
    await env.advance_until(workflow_id, "failed", step=0.1)
    app = console_on(await as_source(env.orch), first_pane="workflows")
    assert app.no_color is no_color
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(app, pilot, "charge_deposit")
        text = await on_screen(
            app,
            "◇ uncertain",  # the symbol carries it without colour
            "outcome unknown: the request may have taken effect;",
            "nothing undid it: check",
        )
        assert all(len(line) <= 80 for line in text.splitlines())


async def test_an_uncertain_step_that_compensation_undid_says_so(
    env: Env, as_source: SourceOf
) -> None:
    await env.orch.workflow_definitions.register(charge_that_times_out("slow-charge"), actor="t")
    env.services["payment"].stall_after_effect["/charges"] = 2.0
    workflow_id = await env.start("slow-charge", correlation_id="wed-undone")
    await env.advance_until(workflow_id, "compensated", step=0.1)
    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await open_detail(app, pilot, "charge_deposit")
        await on_screen(app, "outcome unknown: the request may have taken", "its compensation")
    assert len(env.services["payment"].calls_to("/refunds")) == 1


async def test_an_action_during_a_slow_call_is_queued_and_the_detail_says_until_when(
    env: Env,
    as_source: SourceOf,
) -> None:
    slow = [
        {**s, "timeout_seconds": 60} if s["name"] == "order_catering" else s
        for s in BOOKING["steps"]
    ]
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "slow-vendor", "steps": slow}, actor="t"
    )
    answer = env.services["catering"].held["/orders"] = asyncio.Event()
    env.orch.workflows.actions.queued_wait_seconds = 0.2  # answered as queued at once
    workflow_id = await env.start("slow-vendor", correlation_id="wed-slow")
    await eventually(lambda: len(env.services["catering"].calls) == 1, message="catering called")
    app = console_on(await as_source(env.orch), first_pane="workflows")
    # The held call is answered whatever happens: a failure must not leave it hanging.
    async with app.run_test(size=SIZE, notifications=True) as pilot, _answered(answer):
        await open_detail(app, pilot, "order_catering")
        await on_screen(app, "attempt ends by")
        await pilot.press("p")
        await on_screen(app, "Pause workflow slow-vendor wed-slow?")
        await confirm_with_reason(app, pilot, "vendor on the phone")
        assert not isinstance(app.screen, ConfirmMutationScreen)
        await on_screen(app, "pause queued: applies", "order_catering")  # the toast
        await on_screen(app, f"⧗ queued: pause by {app.actor}")  # the summary, until applied
        answer.set()
        await env.until(workflow_id, "paused")
        await on_screen(app, "‖ paused")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.pending_actions == []
    assert status.workflow.context_data["order_catering_id"] == "catering-1"  # its answer kept
    paused = [e for e in status.execution_timeline if e.event == "paused"]
    assert [(e.actor, e.details["reason"]) for e in paused] == [(app.actor, "vendor on the phone")]


@contextlib.asynccontextmanager
async def _answered(answer: asyncio.Event) -> AsyncIterator[None]:
    try:
        yield
    finally:
        answer.set()


class _CallPathDown:
    """An engine whose call path cannot start: every drive crashes."""

    def __init__(self, env: Env) -> None:
        self.db = env.orch.db
        self.clock = env.orch.clock

    async def caller(self) -> Any:
        raise RuntimeError("call path failed to start")


async def test_a_workflow_parked_after_crashed_drives_says_so(
    env: Env, as_source: SourceOf
) -> None:
    await env.runner.stop()
    env.orch.workflows.attach_runner(None)
    workflow_id = await env.start(correlation_id="wed-crashy")
    runner = SagaRunner(_CallPathDown(env), owner="crashy", actor="daemon:crashy", poll_seconds=0.1)
    task = asyncio.create_task(runner.run_forever())
    try:
        await env.advance_until(workflow_id, "failed", step=1.0, limit=100)
    finally:
        await runner.stop()
        await task
    app = console_on(await as_source(env.orch), first_pane="workflows")
    async with app.run_test(size=SIZE) as pilot:
        await pane_loaded(app, "workflows")
        await pilot.press("enter")
        await pane_loaded(app, "workflow")
        await on_screen(app, "parked after 3 crashed drives", "needs intervention")

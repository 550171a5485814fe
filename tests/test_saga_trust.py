"""What the saga engine promises when things go wrong, against real HTTP participants and
real PostgreSQL: every attempt ends in a recorded outcome, operators' actions on a
workflow in flight are never written over, and effects that may exist are undone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchcore import ConflictError, ValidationFailed
from orchcore.saga.runner import SagaRunner
from orchcore.saga.views import GetWorkflowStatusResponse, StepView
from tests.support.http import free_port
from tests.support.polling import eventually
from tests.support.registry import mark
from tests.support.sagas import BOOKING, Env, call_step

pytestmark = pytest.mark.usefixtures("env")


def step_of(status: GetWorkflowStatusResponse, name: str) -> StepView:
    return next(s for s in status.steps if s.step_name == name)


def timeline(status: GetWorkflowStatusResponse) -> list[str]:
    return [e.event for e in status.execution_timeline]


async def register(env: Env, **definition: Any) -> str:
    await env.orch.workflow_definitions.register({**BOOKING, **definition}, actor="t")
    return str(definition["name"])


async def step_running(env: Env, workflow_id: str, name: str) -> None:
    async def running() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        return step_of(status, name).status == "running"

    await eventually(running, message=f"{name} in flight")


# -- every attempt ends in a recorded outcome ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        (b'{"id": "res\\u0000-1"}', "output.id", "contains \\u0000"),
        (b'{"id": "res-1", "price": NaN}', "output.body", None),  # not JSON: kept as text
        (b'{"id": "res-1", "notes": {"\\u0000": 1}}', "output.notes", "a key contains \\u0000"),
    ],
)
async def test_a_poison_answer_is_refused_naming_the_step_and_field(
    env: Env, body: bytes, field: str, why: str | None
) -> None:
    env.services["venue"].answer_body["/reservations"] = body
    workflow_id = await env.start()
    await env.until(workflow_id, "compensated", "failed")
    status = await env.orch.workflows.status(workflow_id)
    venue = step_of(status, "reserve_venue")
    assert len(env.services["venue"].calls_to("/reservations")) == 1  # refused, not retried
    assert status.workflow.lease_owner is None
    if why is None:
        # NaN is not JSON: the answer is kept as text, and its mapping finds no id
        assert venue.status == "failed"
        assert "output_mapping" in (venue.error_message or "")
        return
    assert venue.status == "failed"
    assert status.workflow.error_details is not None
    assert status.workflow.error_details.step_name == "reserve_venue"
    assert f"the answer cannot be stored: {field}: {why}" in (venue.error_message or "")


async def test_an_unexpected_error_in_the_call_path_is_a_failed_attempt(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault injected into orch's own call path: a bug there must end the attempt with
    # its text on the step, not leave the workflow to its lease round after round.
    caller = await env.orch.caller()
    real_call = caller.call

    async def call(source: str, target: str, endpoint: str, **kwargs: Any) -> Any:
        if endpoint == "/orders":
            raise RuntimeError("the call path tripped over itself")
        return await real_call(source, target, endpoint, **kwargs)

    monkeypatch.setattr(caller, "call", call)
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "compensated", step=0.1)
    status = await env.orch.workflows.status(workflow_id)
    catering = step_of(status, "order_catering")
    assert catering.retry_count == 2  # counted as failed attempts within the budget
    assert "RuntimeError: the call path tripped over itself" in (catering.error_message or "")
    # it may have struck after the request went out: undone like any uncertain step
    assert catering.status == "compensated"
    assert status.workflow.lease_owner is None


class _CallPathDown:
    """An engine whose call path cannot start: every drive of every workflow crashes."""

    def __init__(self, env: Env) -> None:
        self.db = env.orch.db
        self.clock = env.orch.clock

    async def caller(self) -> Any:
        raise RuntimeError("call path failed to start")


async def test_a_workflow_whose_drive_keeps_crashing_is_parked_with_an_alert(env: Env) -> None:
    await env.runner.stop()
    env.orch.workflows.attach_runner(None)
    workflow_id = await env.start()
    runner = SagaRunner(_CallPathDown(env), owner="crashy", actor="daemon:crashy", poll_seconds=0.1)
    task = asyncio.create_task(runner.run_forever())
    try:
        await env.advance_until(workflow_id, "failed", step=1.0, limit=100)
    finally:
        await runner.stop()
        await task
    status = await env.orch.workflows.status(workflow_id)
    assert timeline(status).count("drive_crashed") == 3
    assert "workflow_parked" in timeline(status)
    assert status.workflow.drive_crashes == 3
    assert "call path failed to start" in (status.workflow.error_details.error_message or "")  # type: ignore[union-attr]
    alerts = await env.orch.alerts.list_alerts(subject_id=workflow_id)
    assert [a.kind for a in alerts] == ["workflow_parked"]
    assert env.services["venue"].calls == []


async def test_a_workflow_that_cannot_be_loaded_never_stops_the_others(env: Env) -> None:
    await env.runner.stop()
    env.orch.workflows.attach_runner(None)
    ids = [await env.start(correlation_id=f"row-{i}") for i in range(3)]
    await env.orch.db.execute(
        "UPDATE distributed_workflows SET workflow_definition = '{\"name\": 7}' WHERE id = $1",
        ids[1],
    )
    runner = SagaRunner(env.orch, owner="b", actor="daemon:b", poll_seconds=0.1)
    task = asyncio.create_task(runner.run_forever())
    try:
        for workflow_id in (ids[0], ids[2]):
            await env.advance_until(workflow_id, "completed", step=0.2)
        await env.until(ids[1], "failed")
    finally:
        await runner.stop()
        await task
    broken = await env.orch.workflows.status(ids[1])
    assert "cannot be loaded" in (broken.workflow.error_details.error_message or "")  # type: ignore[union-attr]
    assert [a.kind for a in await env.orch.alerts.list_alerts(subject_id=ids[1])] == [
        "workflow_parked"
    ]


# -- unknown outcomes are compensated ----------------------------------------------------------


async def test_a_step_timed_out_after_the_service_applied_it_is_compensated(env: Env) -> None:
    name = await register(
        env,
        name="slow-charge",
        steps=[
            *BOOKING["steps"][:2],
            call_step(
                "charge_deposit",
                3,
                "payment",
                "/charges",
                compensate="/refunds",
                timeout_seconds=0.3,
                retry_policy={"max_retries": 1, "initial_delay": 100},
            ),
            BOOKING["steps"][3],
        ],
    )
    payment = env.services["payment"]
    payment.stall_after_effect["/charges"] = 2.0  # charged, and the answer comes too late
    workflow_id = await env.start(name)
    await env.advance_until(workflow_id, "compensated", step=0.1)
    status = await env.orch.workflows.status(workflow_id)
    charge = step_of(status, "charge_deposit")
    assert "step_uncertain" in timeline(status)
    assert charge.outcome_unknown
    assert charge.compensation_status == "completed"
    key = f"{workflow_id}:charge_deposit:forward"
    assert [c.key for c in payment.calls_to("/charges")] == [key, key]  # retried, same key
    assert payment.effects_for(key) == 1  # charged once
    refunds = payment.calls_to("/refunds")
    assert [c.key for c in refunds] == [f"{workflow_id}:charge_deposit:compensate"]
    order = [e.step_name for e in status.execution_timeline if e.event == "compensation_succeeded"]
    assert order == ["charge_deposit", "order_catering", "reserve_venue"]


async def test_a_step_that_never_reached_its_service_is_not_compensated(env: Env) -> None:
    await env.orch.registry.register_service(
        {"service_name": "florist", "service_type": "api", "deployment_environment": "staging"},
        actor="t",
    )
    await env.orch.registry.register_instance(
        "florist",
        {
            "instance_id": "florist-1",
            "ip_address": "127.0.0.1",
            "port": free_port(),
            "version": "1",
        },
        actor="t",
    )
    await mark(env.orch, "florist-1", "healthy")
    await env.orch.discovery.refresh_all()
    name = await register(
        env,
        name="flowers",
        steps=[
            BOOKING["steps"][0],
            call_step("order_flowers", 2, "florist", "/bouquets", compensate="/bouquets/cancel"),
        ],
    )
    workflow_id = await env.start(name)
    await env.advance_until(workflow_id, "compensated", "compensation_failed", step=0.1)
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.current_status == "compensated"  # no undo tried on the florist
    flowers = step_of(status, "order_flowers")
    assert (flowers.status, flowers.outcome_unknown) == ("failed", False)
    assert flowers.compensation_status is None
    assert "connection" in (flowers.error_message or "")


# -- operators' actions while a step is in flight ------------------------------------------------


async def test_a_pause_during_a_slow_step_applies_when_the_step_ends(env: Env) -> None:
    env.services["catering"].delay = 1.0
    workflow_id = await env.start()
    await step_running(env, workflow_id, "order_catering")
    paused = await env.orch.workflows.pause(workflow_id, actor="ops", reason="vendor call")
    assert paused.current_status == "paused"  # applied by the daemon once catering answered
    status = await env.orch.workflows.status(workflow_id)
    assert step_of(status, "order_catering").status == "completed"  # its outcome kept
    assert status.workflow.context_data["order_catering_id"] == "catering-1"
    order = [(e.event, e.step_name) for e in status.execution_timeline]
    queued = order.index(("action_queued", None))
    answered = order.index(("attempt_succeeded", "order_catering"))
    assert queued < answered < order.index(("paused", None))
    paused_event = next(e for e in status.execution_timeline if e.event == "paused")
    assert (paused_event.actor, paused_event.details["reason"]) == ("ops", "vendor call")
    assert env.services["payment"].calls == []
    await env.orch.workflows.resume(workflow_id, actor="ops")
    await env.until(workflow_id, "completed")


FULL_SERVICE = {
    "name": "full-service",
    "steps": [
        call_step("reserve_venue", 1, "venue", "/reservations", compensate="/reservations/cancel"),
        {
            "name": "vendors",
            "type": "parallel",
            "order": 2,
            "branches": [
                {"name": "food", "steps": [call_step("order_catering", 0, "catering", "/orders")]},
                {
                    "name": "photos",
                    "steps": [call_step("book_photographer", 0, "photographer", "/bookings")],
                },
            ],
        },
        call_step("charge_deposit", 3, "payment", "/charges"),
    ],
}
for _branch in FULL_SERVICE["steps"][1]["branches"]:  # type: ignore[index]
    for _step in _branch["steps"]:
        _step.pop("order")


async def test_a_skip_during_a_slow_step_is_not_written_over(env: Env) -> None:
    await env.orch.workflow_definitions.register(FULL_SERVICE, actor="t")
    env.services["catering"].delay = 1.5
    env.services["photographer"].always_fail["/bookings"] = 503
    workflow_id = await env.start("full-service")

    async def photographer_waits() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        return step_of(status, "book_photographer").status == "retrying"

    await eventually(photographer_waits)
    status = await env.orch.workflows.status(workflow_id)
    assert step_of(status, "order_catering").status == "running"  # the slow one, in flight
    skipped = await env.orch.workflows.skip_step(
        workflow_id,
        "book_photographer",
        output={"id": "booked-by-phone"},
        actor="ops",
        reason="photographer booked by phone",
    )
    assert skipped.pending_actions == []  # applied once catering answered
    await env.until(workflow_id, "completed")
    status = await env.orch.workflows.status(workflow_id)
    assert step_of(status, "book_photographer").status == "skipped"
    assert status.workflow.context_data["book_photographer_id"] == "booked-by-phone"
    assert status.workflow.context_data["order_catering_id"] == "catering-1"
    assert len(env.services["photographer"].calls) == 1  # never retried after the skip
    skip = next(e for e in status.execution_timeline if e.event == "step_skipped")
    assert skip.actor == "ops"


async def test_an_action_queued_for_too_long_is_answered_as_pending(env: Env) -> None:
    env.services["catering"].delay = 2.0
    env.orch.workflows.actions.queued_wait_seconds = 0.2
    workflow_id = await env.start()
    await step_running(env, workflow_id, "order_catering")
    queued = await env.orch.workflows.cancel(workflow_id, actor="ops", reason="couple called")
    assert queued.current_status == "running"
    assert [a.action for a in queued.pending_actions] == ["cancel"]
    assert [s.step_name for s in queued.in_flight] == ["order_catering"]
    assert queued.in_flight[0].deadline is not None
    await env.until(workflow_id, "cancelled")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.pending_actions == []
    assert step_of(status, "order_catering").status == "completed"  # it answered: known
    assert step_of(status, "charge_deposit").status == "cancelled"
    assert env.services["payment"].calls == []


async def test_a_compensation_during_a_slow_step_undoes_that_step_too(env: Env) -> None:
    env.services["catering"].delay = 1.0
    workflow_id = await env.start()
    await step_running(env, workflow_id, "order_catering")
    await env.orch.workflows.compensate(workflow_id, {"reason": "called off"}, actor="ops")
    await env.until(workflow_id, "compensated")
    assert len(env.services["catering"].calls_to("/orders/cancel")) == 1
    assert len(env.services["venue"].calls_to("/reservations/cancel")) == 1
    assert env.services["payment"].calls == []


async def test_an_action_the_driving_daemon_refuses_is_answered_409(env: Env) -> None:
    env.services["notification"].delay = 1.0
    workflow_id = await env.start()
    await step_running(env, workflow_id, "confirm")
    # allowed by what the database shows (a step in flight), refused by the daemon once
    # the last step answered: by then the workflow had completed
    with pytest.raises(ConflictError, match="cannot pause a workflow that is completed"):
        await env.orch.workflows.pause(workflow_id, actor="ops", reason="too late")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.current_status == "completed"
    refused = next(e for e in status.execution_timeline if e.event == "action_refused")
    assert (refused.actor, refused.details["action"]) == ("ops", "pause")


# -- retries by operators ------------------------------------------------------------------------


async def test_an_operator_retry_is_a_new_generation_with_its_own_budget(env: Env) -> None:
    name = await register(env, name="no-undo", compensation_strategy="none")
    payment = env.services["payment"]
    payment.remember_refusals = True  # a 402 stays the answer to its key
    payment.fail["/charges"] = [402, 503, 503]
    workflow_id = await env.start(name)
    await env.until(workflow_id, "failed")
    await env.orch.workflows.retry(workflow_id, {"max_retries": 4}, actor="ops")
    await env.advance_until(workflow_id, "completed", step=0.2)
    key = f"{workflow_id}:charge_deposit:forward"
    assert [c.key for c in payment.calls_to("/charges")] == [key] + [f"{key}:2"] * 3
    status = await env.orch.workflows.status(workflow_id)
    charge = step_of(status, "charge_deposit")
    assert (charge.generation, charge.max_retries, charge.retry_count) == (2, 4, 2)
    retried = next(e for e in status.execution_timeline if e.event == "retry_requested")
    assert retried.details["generations"]["charge_deposit"] == 2


# -- batches ---------------------------------------------------------------------------------------


async def test_a_batch_needs_a_filter_and_acts_on_exactly_what_was_previewed(env: Env) -> None:
    name = await register(env, name="no-undo", compensation_strategy="none")
    env.services["payment"].always_fail["/charges"] = 402
    first = [await env.start(name, correlation_id=f"b-{i}") for i in range(2)]
    for workflow_id in first:
        await env.until(workflow_id, "failed")
    with pytest.raises(ValidationFailed, match="give at least one of status"):
        await env.orch.workflows.batch("cancel", actor="ops", dry_run=True)
    preview = await env.orch.workflows.batch("cancel", actor="ops", dry_run=True, status=["failed"])
    assert sorted(map(str, preview.workflow_ids)) == sorted(first)
    late = await env.start(name, correlation_id="b-late")  # fails after the preview
    await env.until(late, "failed")
    with pytest.raises(ValidationFailed, match="workflow_ids"):
        await env.orch.workflows.batch("cancel", actor="ops", status=["failed"])
    done = await env.orch.workflows.batch(
        "cancel", actor="ops", status=["failed"], workflow_ids=preview.workflow_ids
    )
    assert sorted(str(r.workflow_id) for r in done.results) == sorted(first)
    assert await env.status(late) == "failed"  # not previewed, not touched


async def test_a_branch_waiting_for_its_retry_does_not_hold_the_workflow(env: Env) -> None:
    await env.orch.workflow_definitions.register(FULL_SERVICE, actor="t")
    env.services["photographer"].fail["/bookings"] = [503]
    workflow_id = await env.start("full-service")

    async def parked_until_the_retry() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        return (
            step_of(status, "book_photographer").status == "retrying"
            and step_of(status, "order_catering").status == "completed"
            and status.workflow.lease_owner is None
        )

    await eventually(parked_until_the_retry, message="the lease given back while it waits")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.current_status == "retrying"
    assert status.workflow.next_run_at == step_of(status, "book_photographer").next_attempt_at
    assert env.runner.in_flight == 0
    await env.advance_until(workflow_id, "completed", step=0.1)
    assert len(env.services["photographer"].calls) == 2

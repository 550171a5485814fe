"""The saga outbox: a step's messages are sent by the statement that records the step, so
a message exists if and only if its step committed. Real PostgreSQL and PGMQ, real HTTP
participants; the rules of the transitions are tested alone first."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from orchcore import Orch
from orchcore.saga import forward, outbox, planner
from orchcore.saga.execution import Outcome
from orchcore.saga.models import PublishMessage, WorkflowDefinition
from orchcore.saga.persistence import write_changes
from orchcore.saga.state import OutboxMessage, WorkflowState
from orchcore.saga.status import StepStatus, WorkflowEvent, WorkflowStatus
from orchcore.tracing.sagaspans import FORWARD, publish_span_id, step_span_id, workflow_span_id
from tests.support.polling import eventually
from tests.support.sagas import INITIATOR, Env, call_step

QUEUE = "booking_events"
NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


def message(queue: str, message_type: str, **payload: str) -> dict[str, Any]:
    return {"queue_name": queue, "message_type": message_type, "payload_mapping": payload}


ANNOUNCE: dict[str, Any] = {
    "name": "announce",
    "version": "1.0.0",
    "steps": [
        call_step(
            "reserve_venue",
            1,
            "venue",
            "/reservations",
            compensate="/reservations/cancel",
            publish=[
                message(QUEUE, "venue.reserved", wedding_id="wedding_id", id="reserve_venue_id")
            ],
        ),
        call_step("charge_deposit", 2, "payment", "/charges", compensate="/refunds"),
        {
            "name": "announce",
            "type": "publish",
            "order": 3,
            "publish": [
                message(
                    QUEUE, "booking.confirmed", wedding_id="wedding_id", venue="reserve_venue_id"
                )
            ],
        },
    ],
    "publish_on_completed": [message(QUEUE, "booking.done", wedding_id="wedding_id")],
    "publish_on_compensated": [message(QUEUE, "booking.failed", wedding_id="wedding_id")],
}


# -- the definition ---------------------------------------------------------------------


def test_a_publish_step_needs_messages_and_calls_no_service() -> None:
    with pytest.raises(ValueError, match="a publish step needs at least one message"):
        WorkflowDefinition.model_validate(
            {"name": "x", "steps": [{"name": "p", "type": "publish", "order": 1}]}
        )
    with pytest.raises(ValueError, match="a publish step calls no service"):
        WorkflowDefinition.model_validate(
            {
                "name": "x",
                "steps": [
                    {
                        "name": "p",
                        "type": "publish",
                        "order": 1,
                        "service_name": "venue",
                        "publish": [message(QUEUE, "t")],
                    }
                ],
            }
        )
    with pytest.raises(ValueError, match="a delay step publishes nothing"):
        WorkflowDefinition.model_validate(
            {
                "name": "x",
                "steps": [
                    {
                        "name": "d",
                        "type": "delay",
                        "order": 1,
                        "delay_seconds": 1,
                        "publish": [message(QUEUE, "t")],
                    }
                ],
            }
        )
    with pytest.raises(ValueError, match="String should match pattern"):
        WorkflowDefinition.model_validate(
            {**ANNOUNCE, "publish_on_completed": [message("Not A Queue", "t")]}
        )


def test_a_definition_without_the_outbox_is_stored_as_before() -> None:
    """Definitions registered before the outbox compare equal when registered again."""
    plain = copy.deepcopy(ANNOUNCE)
    for step in plain["steps"]:
        step.pop("publish", None)
    plain["steps"].pop()
    del plain["publish_on_completed"], plain["publish_on_compensated"]
    stored = WorkflowDefinition.model_validate(plain).model_dump(mode="json")
    assert "publish_on_completed" not in stored
    assert all("publish" not in step for step in stored["steps"])


# -- the pure transitions ----------------------------------------------------------------


def workflow() -> WorkflowState:
    return WorkflowState.fresh(
        workflow_id=uuid.uuid4(),
        definition=WorkflowDefinition.model_validate(ANNOUNCE),
        correlation_id="wf-test",
        wedding_id=None,
        initiating_service="booking",
        context={"wedding_id": "w-1"},
        status=WorkflowStatus.RUNNING,
        started_at=NOW,
        timeout_at=NOW + timedelta(hours=1),
        lease_owner="d",
        lease_until=NOW + timedelta(seconds=30),
        trace_id="0" * 32,
    )


def encoded(step: str | None, message_type: str) -> OutboxMessage:
    return OutboxMessage(
        step_name=step,
        queue_name=QUEUE,
        topic=False,
        message_type=message_type,
        message=json.dumps({"type": message_type, "payload": {}}),
        headers=None,
        ttl_seconds=None,
        delay_seconds=0,
        correlation_id="wf-test",
        producer="booking",
        size_bytes=2,
    )


def ok(output: Any = None) -> Outcome:
    return Outcome(ok=True, transient=False, request={}, output=output or {"id": "v-1"})


def test_a_success_puts_its_messages_in_the_outbox_and_a_failure_none() -> None:
    state = workflow()
    venue = state.steps["reserve_venue"]
    forward.start_attempt(state, venue, NOW, "d")
    forward.apply_attempt(state, venue, ok(), NOW, "d", [encoded("reserve_venue", "x")])
    assert venue.status == StepStatus.COMPLETED
    assert [m.message_type for m in state.outbox] == ["x"]
    assert state.events[-1].event == WorkflowEvent.MESSAGES_PUBLISHED

    charge = state.steps["charge_deposit"]
    forward.start_attempt(state, charge, NOW, "d")
    refused = Outcome(ok=False, transient=False, request={}, status_code=402, error="HTTP 402")
    forward.apply_attempt(state, charge, refused, NOW, "d", [encoded("charge_deposit", "y")])
    assert charge.status == StepStatus.FAILED
    assert [m.message_type for m in state.outbox] == ["x"]  # nothing of the failed step


def test_the_outbox_goes_with_the_changes_and_comes_back_if_they_are_not_written() -> None:
    state = workflow()
    step = state.steps["announce"]
    assert isinstance(planner.plan(state, NOW), planner.RunStep)  # reserve_venue first
    state.steps["reserve_venue"].status = StepStatus.COMPLETED
    state.steps["charge_deposit"].status = StepStatus.COMPLETED
    action = planner.plan(state, NOW)
    assert action == planner.Publish(step)
    forward.publish(
        state, step, ok({"published": ["booking.confirmed"]}), [encoded("a", "z")], NOW, "d"
    )
    assert step.status == StepStatus.COMPLETED
    changes = state.take_changes()
    assert [m.message_type for m in changes.messages] == ["z"] and state.outbox == []
    state.give_back(changes)  # the commit failed: the messages wait for the next one
    assert [m.message_type for m in state.outbox] == ["z"]
    assert isinstance(planner.plan(state, NOW), planner.Complete)


def test_a_publish_refused_for_good_fails_the_step_and_a_transient_one_retries() -> None:
    state = workflow()
    state.steps["reserve_venue"].status = StepStatus.COMPLETED
    state.steps["charge_deposit"].status = StepStatus.COMPLETED
    step = state.steps["announce"]
    unreadable = Outcome(ok=False, transient=True, request=None, error="db down")
    forward.publish(state, step, unreadable, [], NOW, "d")
    assert step.status == StepStatus.RETRYING and state.outbox == []
    assert isinstance(planner.plan(state, NOW), planner.Wait)
    refused = Outcome(ok=False, transient=False, request=None, error="queue gone")
    forward.publish(state, step, refused, [], NOW + timedelta(seconds=5), "d")
    assert step.status == StepStatus.FAILED and state.outbox == []
    assert isinstance(planner.plan(state, NOW), planner.BeginCompensation)


def test_an_end_whose_messages_are_refused_is_recorded_with_an_alert() -> None:
    state = workflow()
    forward.publish_at_end(state, [], "publish.0 to 'gone': queue not found", NOW, "d")
    assert state.events[-1].event == WorkflowEvent.PUBLISH_REFUSED
    assert [a.kind for a in state.alerts] == ["workflow_publish_refused"]


# -- against the database ------------------------------------------------------------------


async def make_queue(orch: Orch, name: str = QUEUE, **overrides: Any) -> None:
    await orch.bus.create_queue(
        {
            "queue_name": name,
            "producer_services": [INITIATOR],
            "consumer_services": ["notification"],
            **overrides,
        },
        actor="t",
    )


async def published(orch: Orch, queue: str = QUEUE) -> list[dict[str, Any]]:
    rows = await orch.db.fetch(f"SELECT message FROM pgmq.q_{queue} ORDER BY msg_id")
    return [_json(r["message"]) for r in rows]


async def types(orch: Orch, queue: str = QUEUE) -> list[str]:
    return [m["type"] for m in await published(orch, queue)]


async def test_steps_publish_with_their_commit_and_the_workflow_with_its_end(env: Env) -> None:
    await make_queue(env.orch)
    registered = await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    assert registered.warnings == []
    workflow_id = await env.start("announce", correlation_id="wedding-1")
    await env.until(workflow_id, "completed")
    messages = await published(env.orch)
    assert [m["type"] for m in messages] == ["venue.reserved", "booking.confirmed", "booking.done"]
    reserved, confirmed, _done = messages
    venue_id = env.services["venue"].effects[f"{workflow_id}:reserve_venue:forward"]["id"]
    assert reserved["payload"] == {"wedding_id": "w-1", "id": venue_id}
    assert confirmed["payload"] == {"wedding_id": "w-1", "venue": venue_id}
    assert {m["correlation_id"] for m in messages} == {"wedding-1"}
    assert {m["producer"] for m in messages} == {INITIATOR}
    # Logged as produced in the same statement; on the timeline with their step.
    logged = await env.orch.db.fetch(
        "SELECT status, producer_service, message_type FROM message_logs WHERE queue_name = $1",
        QUEUE,
    )
    assert {(r["status"], r["producer_service"]) for r in logged} == {("produced", INITIATOR)}
    status = await env.orch.workflows.status(workflow_id)
    assert [e.step_name for e in status.execution_timeline if e.event == "messages_published"] == [
        "reserve_venue",
        "announce",
        None,
    ]
    # A consumer receives them like any other message.
    got = await env.orch.bus.receive(QUEUE, {"max_messages": 10}, consumer="notification")
    assert [m.message_type for m in got.messages][:2] == ["venue.reserved", "booking.confirmed"]
    # Each carries the trace of what published it: its step's span, or the workflow's.
    trace_id = await env.orch.tracing.trace_of_workflow(workflow_id)
    wf = UUID(workflow_id)
    publishes = [
        publish_span_id(wf, "reserve_venue", 1, 0),
        publish_span_id(wf, "announce", 1, 0),
        publish_span_id(wf, None, 0, 0),
    ]
    assert [m.headers.get("traceparent") for m in got.messages] == [
        f"00-{trace_id}-{span}-01" for span in publishes
    ]
    # ... the producer spans of the publishes, under their step (the end's under the root).
    await env.orch.tracing.flush()
    rows = await env.orch.db.fetch(
        "SELECT span_id, parent_span_id, span_kind, tags FROM distributed_traces"
        " WHERE trace_id = $1 AND span_kind = 'producer'",
        trace_id,
    )
    parents = {r["span_id"]: r["parent_span_id"] for r in rows}
    assert parents == {
        publishes[0]: step_span_id(wf, "reserve_venue", FORWARD),
        publishes[1]: step_span_id(wf, "announce", FORWARD),
        publishes[2]: workflow_span_id(wf),
    }
    assert {r["tags"]["messaging.destination.name"] for r in rows} == {QUEUE}


async def test_a_failed_step_publishes_nothing_and_the_compensated_end_does(env: Env) -> None:
    await make_queue(env.orch)
    await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start("announce")
    await env.until(workflow_id, "compensated")
    assert await types(env.orch) == ["venue.reserved", "booking.failed"]


async def test_a_refused_publish_fails_the_step_and_sends_nothing(env: Env) -> None:
    await make_queue(env.orch, producer_services=["someone_else"])
    registered = await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    assert registered.warnings == []
    workflow_id = await env.start("announce")
    await env.until(workflow_id, "compensated")
    status = await env.orch.workflows.status(workflow_id)
    venue = next(s for s in status.steps if s.step_name == "reserve_venue")
    # The venue was reserved but the step cannot be recorded as done: it is undone.
    assert venue.status == "compensated" and venue.compensation_status == "completed"
    assert "not a producer of queue 'booking_events'" in (venue.error_message or "")
    assert len(env.services["venue"].calls_to("/reservations/cancel")) == 1
    assert await types(env.orch) == []  # the end's booking.failed is refused too
    timeline = [e.event for e in status.execution_timeline]
    assert "publish_refused" in timeline
    alerts = await env.orch.alerts.list_alerts(subject_id=workflow_id)
    assert "workflow_publish_refused" in [a.kind for a in alerts]


async def test_a_definition_naming_a_missing_queue_is_warned_about(env: Env) -> None:
    registered = await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    assert registered.warnings == [
        "queue 'booking_events' does not exist or is inactive (yet): publishing to it fails "
        "the step"
    ]


async def test_a_step_whose_commit_fails_publishes_nothing(env: Env) -> None:
    """The lease is lost while the step's call is out: the drive's commit fails its guard
    and nothing it publishes is sent; whoever drives the workflow next sends it once."""
    await make_queue(env.orch)
    await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    venue = env.services["venue"]
    release = venue.held["/reservations"] = asyncio.Event()
    workflow_id = await env.start("announce")
    await eventually(lambda: len(venue.calls_to("/reservations")) == 1)
    # Another daemon took the workflow over (this one's lease ran out, say).
    await env.orch.db.execute(
        "UPDATE distributed_workflows SET lease_owner = 'someone-else', revision = revision + 1"
        " WHERE id = $1",
        workflow_id,
    )
    release.set()
    await eventually(lambda: env.runner.in_flight == 0, message="the drive gave up")
    assert await types(env.orch) == []
    step = await env.orch.db.fetchval(
        "SELECT status FROM workflow_steps WHERE workflow_id = $1 AND step_name = 'reserve_venue'",
        workflow_id,
    )
    assert step == "running"  # not recorded as done: its success was never committed
    # The trace says why the step took so long: this daemon lost its lease.
    await env.orch.tracing.flush()
    lost = await env.orch.db.fetchrow(
        "SELECT parent_span_id, logs FROM distributed_traces"
        " WHERE operation_name = 'lease lost' AND tags->>'orch.workflow.id' = $1",
        workflow_id,
    )
    assert lost is not None and lost["parent_span_id"] == workflow_span_id(UUID(workflow_id))
    assert [e["name"] for e in _json(lost["logs"])] == ["lease lost"]
    # The other daemon died too: its lease runs out and this runner carries on.
    await env.orch.db.execute(
        "UPDATE distributed_workflows SET lease_owner = NULL, lease_until = NULL WHERE id = $1",
        workflow_id,
    )
    del venue.held["/reservations"]
    await env.advance_until(workflow_id, "completed")
    assert await types(env.orch) == ["venue.reserved", "booking.confirmed", "booking.done"]
    assert len(venue.calls_to("/reservations")) == 2  # called again, under the same key
    assert venue.effects_for(f"{workflow_id}:reserve_venue:forward") == 1


async def test_the_commit_statement_sends_only_when_its_guard_holds(env: Env) -> None:
    """write_changes directly: a stale revision writes nothing and sends nothing."""
    await make_queue(env.orch)
    await make_queue(env.orch, "audit_trail")
    await env.orch.bus.create_queue(
        {"queue_name": "booking_topic", "queue_type": "topic", "producer_services": [INITIATOR]},
        actor="t",
    )
    await env.orch.bus.update_queue("audit_trail", {"message_pattern": "booking.#"}, actor="t")
    await env.orch.workflow_definitions.register(ANNOUNCE, actor="t")
    await env.runner.stop()
    env.orch.workflows.attach_runner(None)
    workflow_id = await env.start("announce")
    row = await env.orch.db.fetchrow(
        "SELECT * FROM distributed_workflows WHERE id = $1", workflow_id
    )
    steps = await env.orch.db.fetch(
        "SELECT * FROM workflow_steps WHERE workflow_id = $1", workflow_id
    )
    state = WorkflowState.from_row(row, [dict(s) for s in steps])
    ready = await outbox.prepare(
        env.orch.bus,
        state,
        "announce",
        [PublishMessage.model_validate(message(QUEUE, "booking.confirmed", w="wedding_id")),
         PublishMessage.model_validate(
             {**message("booking_topic", "booking.noted"), "ttl_seconds": 600})],
        state.context,
        actor="t",
    )  # fmt: skip
    state.outbox.extend(ready.messages)
    changes = state.take_changes()
    now = env.clock.now()
    stale = await write_changes(
        env.orch.db, state, changes, now=now, actor="t", guard_owner=None,
        lease_owner=None, lease_until=None,
    )  # fmt: skip
    assert stale is not None  # nobody holds it: the guard holds, and it is written
    assert await types(env.orch) == ["booking.confirmed"]
    assert await types(env.orch, "audit_trail") == ["booking.noted"]  # the topic fanned out
    headers = await env.orch.db.fetchval("SELECT headers FROM pgmq.q_audit_trail")
    assert "x-orch-expires-at" in _json(headers)
    again = await write_changes(
        env.orch.db, state, changes, now=now, actor="t", guard_owner=None,
        lease_owner=None, lease_until=None,
    )  # fmt: skip
    assert again is None  # the revision moved on: nothing written, nothing sent
    assert await types(env.orch) == ["booking.confirmed"]
    assert await types(env.orch, "audit_trail") == ["booking.noted"]


async def test_a_payload_over_the_queues_limit_fails_the_publish_step(env: Env) -> None:
    await make_queue(env.orch, max_message_size=10)
    definition = {
        "name": "big",
        "steps": [
            {
                "name": "shout",
                "type": "publish",
                "order": 1,
                "publish": [message(QUEUE, "big", text="wedding_id")],
            }
        ],
    }
    await env.orch.workflow_definitions.register(definition, actor="t")
    response = await env.orch.workflows.start(
        {
            "workflow_name": "big",
            "initiating_service": INITIATOR,
            "context_data": {"wedding_id": "x" * 100},
        },
        actor="t",
    )
    workflow_id = str(response.workflow_id)
    await env.until(workflow_id, "compensated", "failed")
    status = await env.orch.workflows.status(workflow_id)
    [step] = status.steps
    assert step.status == "failed" and "over the limit" in (step.error_message or "")
    assert await types(env.orch) == []


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# -- parallel branches ----------------------------------------------------------------------

#: (branch, its step, service, endpoint, the message type its success publishes)
BRANCHES = [
    ("food", "order_catering", "catering", "/orders", "catering.ordered"),
    ("photos", "book_photographer", "photographer", "/bookings", "photographer.booked"),
    ("place", "reserve_venue", "venue", "/reservations", "venue.reserved"),
]


def branch_step(step: str, service: str, endpoint: str, message_type: str) -> dict[str, Any]:
    definition = call_step(
        step,
        0,
        service,
        endpoint,
        compensate=f"{endpoint}/cancel",
        publish=[message(QUEUE, message_type, wedding_id="wedding_id", id=f"{step}_id")],
    )
    del definition["order"], definition["type"]  # a branch's steps are service calls
    return definition


FAN_OUT: dict[str, Any] = {
    "name": "fan-out",
    "version": "1.0.0",
    "steps": [
        {
            "name": "vendors",
            "type": "parallel",
            "order": 1,
            "branches": [
                {"name": branch, "steps": [branch_step(step, service, endpoint, message_type)]}
                for branch, step, service, endpoint, message_type in BRANCHES
            ],
        },
    ],
    "publish_on_compensated": [message(QUEUE, "booking.failed", wedding_id="wedding_id")],
}


def hold_branches(env: Env, *services: str) -> list[asyncio.Event]:
    """Each named branch's call waits at its participant until the test lets it answer."""
    held = []
    for _branch, _step, service, endpoint, _type in BRANCHES:
        if service in services:
            held.append(env.services[service].held.setdefault(endpoint, asyncio.Event()))
    return held


async def branch_calls_out(env: Env, *services: str) -> None:
    """Every named branch's call has reached its participant (they are out together)."""
    endpoints = {service: endpoint for _b, _s, service, endpoint, _t in BRANCHES}
    await eventually(
        lambda: all(env.services[s].calls_to(endpoints[s]) for s in services),
        message=f"calls of {services} out at once",
    )


async def test_parallel_branches_each_publish_once_with_their_commit(env: Env) -> None:
    await make_queue(env.orch)
    registered = await env.orch.workflow_definitions.register(FAN_OUT, actor="t")
    assert registered.warnings == []
    services = [service for _b, _s, service, _e, _t in BRANCHES]
    held = hold_branches(env, *services)
    workflow_id = await env.start("fan-out", correlation_id="wedding-7")
    await branch_calls_out(env, *services)
    assert await types(env.orch) == []  # nothing before a branch's success commits
    for event in held:  # the three answers come back together and commit side by side
        event.set()
    await env.until(workflow_id, "completed")
    messages = await published(env.orch)
    by_type = {m["type"]: m for m in messages}
    assert sorted(m["type"] for m in messages) == sorted(t for *_rest, t in BRANCHES)
    assert len(by_type) == len(messages) == 3  # each once, and nothing else (no end message)
    for _branch, step, service, _endpoint, message_type in BRANCHES:
        answer = env.services[service].effects[f"{workflow_id}:{step}:forward"]
        assert by_type[message_type]["payload"] == {"wedding_id": "w-1", "id": answer["id"]}
    assert {m["correlation_id"] for m in messages} == {"wedding-7"}
    assert {m["producer"] for m in messages} == {INITIATOR}
    status = await env.orch.workflows.status(workflow_id)
    published_by = [
        e.step_name for e in status.execution_timeline if e.event == "messages_published"
    ]
    assert sorted(published_by) == sorted(step for _b, step, *_rest in BRANCHES)


async def test_a_failed_branch_publishes_nothing_while_the_others_did(env: Env) -> None:
    """A message exists iff its step committed: the branches that succeeded published with
    their success, and compensation undoes their effects but sends no retraction of their
    messages (the compensated end's message says the booking failed); the failed branch
    publishes nothing."""
    await make_queue(env.orch)
    await env.orch.workflow_definitions.register(FAN_OUT, actor="t")
    env.services["photographer"].always_fail["/bookings"] = 409
    held = hold_branches(env, "catering", "venue")
    workflow_id = await env.start("fan-out", correlation_id="wedding-8")
    await branch_calls_out(env, "catering", "photographer", "venue")

    async def photos_failed() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        steps = {s.step_name: s.status for s in status.steps}
        return steps["book_photographer"] == "failed"

    # The failure is recorded while the other branches' calls are still out.
    await eventually(photos_failed, message="the photographer's branch failed")
    assert await types(env.orch) == []
    for event in held:
        event.set()
    await env.until(workflow_id, "compensated")
    messages = await published(env.orch)
    assert sorted(m["type"] for m in messages) == [
        "booking.failed",
        "catering.ordered",
        "venue.reserved",
    ]
    assert {m["correlation_id"] for m in messages} == {"wedding-8"}
    assert len(env.services["catering"].calls_to("/orders/cancel")) == 1
    assert len(env.services["venue"].calls_to("/reservations/cancel")) == 1
    assert env.services["photographer"].calls_to("/bookings/cancel") == []
    status = await env.orch.workflows.status(workflow_id)
    published_by = [
        e.step_name for e in status.execution_timeline if e.event == "messages_published"
    ]
    # the two branches' successes and the compensated end (no step), each once
    assert len(published_by) == 3
    assert set(published_by) == {"order_catering", "reserve_venue", None}

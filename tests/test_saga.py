"""Durable sagas against real HTTP participants: forward, compensation, operators."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchcore import ConflictError, Orch, ValidationFailed
from tests.support.polling import eventually
from tests.support.sagas import BOOKING, Env, call_step

# -- definitions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            lambda d: d["steps"].append({**d["steps"][0], "order": 9}),
            "steps",
            "'reserve_venue' is used twice",
        ),
        (lambda d: d["steps"][1].update(order=1), "steps", "order 1 is used twice"),
        (
            lambda d: d["steps"][0].update(input_mapping={"x": "event..date"}),
            "steps.0.input_mapping",
            "not a well-formed dotted path",
        ),
        (
            lambda d: d["steps"].append(
                {
                    "name": "wait",
                    "type": "delay",
                    "order": 8,
                    "delay_seconds": 5,
                    "compensation_action": {"service_name": "venue", "endpoint": "/x"},
                }
            ),
            "steps.4",
            "a delay step has nothing to compensate",
        ),
        (
            lambda d: d["steps"].append(
                {"name": "fan", "type": "parallel", "order": 8, "branches": []}
            ),
            "steps.4",
            "parallel step needs at least one branch",
        ),
        (
            lambda d: d["steps"][0].update(retry_policy={"maxRetries": -1}),
            "steps.0.retry_policy.maxRetries",
            "greater than or equal to 0",
        ),
        (
            lambda d: d.update(compensation_strategy="partial"),
            "compensate_steps",
            "strategy partial names the steps",
        ),
    ],
)
async def test_definition_validation_is_precise(
    orch: Orch, change: Any, field: str, reason: str
) -> None:
    import copy

    definition = copy.deepcopy(BOOKING)
    change(definition)
    with pytest.raises(ValidationFailed) as caught:
        await orch.workflow_definitions.register(definition, actor="t")
    assert caught.value.field == field
    assert reason in caught.value.reason


async def test_camel_case_aliases_and_unknown_service_warning(orch: Orch) -> None:
    registered = await orch.workflow_definitions.register(
        {
            "name": "camel",
            "timeoutMinutes": 5,
            "compensationStrategy": "none",
            "steps": [
                {
                    "name": "a",
                    "type": "service_call",
                    "order": 1,
                    "serviceName": "ghost",
                    "endpoint": "/x",
                    "inputMapping": {"a": "b"},
                    "retryPolicy": {"maxRetries": 1, "initialDelay": 10, "backoffMultiplier": 3},
                    "timeoutSeconds": 2,
                }
            ],
        },
        actor="t",
    )
    step = registered.definition.steps[0]
    assert (step.service_name, step.retry_policy.max_retries, step.timeout_seconds) == (
        "ghost",
        1,
        2,
    )
    assert registered.warnings == ["service 'ghost' is not registered (yet)"]
    again = await orch.workflow_definitions.register(registered.definition, actor="t")
    assert again.id == registered.id
    changed = registered.definition.model_copy(update={"timeout_minutes": 9})
    with pytest.raises(ConflictError, match="register it under a new version"):
        await orch.workflow_definitions.register(changed, actor="t")


# -- running -----------------------------------------------------------------------------


async def test_happy_path(env: Env) -> None:
    workflow_id = await env.start(correlation_id="wedding-1")
    await env.until(workflow_id, "completed")
    status = await env.orch.workflows.status(workflow_id)
    assert [s.status for s in status.steps] == ["completed"] * 4
    assert status.workflow.current_step == 4
    assert status.workflow.context_data["reserve_venue_id"] == "venue-1"
    for name, service in [
        ("reserve_venue", "venue"),
        ("order_catering", "catering"),
        ("charge_deposit", "payment"),
        ("confirm", "notification"),
    ]:
        calls = env.services[service].calls
        assert len(calls) == 1
        assert calls[0].key == f"{workflow_id}:{name}:forward"
        assert calls[0].correlation_id == "wedding-1"
        assert calls[0].body == {"wedding_id": "w-1"}
        assert calls[0].traceparent is not None
    events = [e.event for e in status.execution_timeline]
    assert events[0] == "workflow_started"
    assert events[-1] == "workflow_completed"
    assert events.count("attempt_succeeded") == 4


async def test_watchers_hear_of_progress_in_announcements_not_per_step(env: Env) -> None:
    # Every NOTIFY is a transaction in each listening session: a step must not
    # notify by itself; the driving runner announces what moved, coalesced.
    heard: list[dict[str, Any]] = []
    assert env.orch.listener is not None
    env.orch.listener.subscribe(heard.append)
    workflow_id = await env.start()
    await env.until(workflow_id, "completed")

    def announced(op: str) -> list[dict[str, Any]]:
        return [
            m
            for m in heard
            if m.get("topic") == "workflow" and m.get("op") == op and workflow_id in m["ids"]
        ]

    await eventually(lambda: announced("progress"), message="a progress announcement")
    per_row = [m for m in heard if m.get("topic") == "workflow" and m.get("id") == workflow_id]
    assert per_row == []  # started and driven here: never claimable, never notified alone
    assert len(announced("progress")) < 4  # four steps, announced together

    await env.orch.workflows.compensate(workflow_id, {"reason": "guest count wrong"}, actor="ops")
    await eventually(lambda: announced("compensation_requested"), message="the operator's action")


async def test_duplicate_correlation_id_returns_the_existing_workflow(env: Env) -> None:
    first = await env.orch.workflows.start(
        {
            "workflow_name": "booking",
            "correlation_id": "wedding-7",
            "context_data": {"wedding_id": "w"},
        },
        actor="t",
    )
    second = await env.orch.workflows.start(
        {
            "workflow_name": "booking",
            "correlation_id": "wedding-7",
            "context_data": {"wedding_id": "w"},
        },
        actor="t",
    )
    assert second.workflow_id == first.workflow_id
    assert (first.created, second.created) == (True, False)
    listed = await env.orch.workflows.list_workflows(correlation_id="wedding-7")
    assert listed.total == 1


@pytest.mark.parametrize("failing_step", [2, 3, 4])
async def test_failure_at_step_k_compensates_the_earlier_steps_in_reverse(
    env: Env, failing_step: int
) -> None:
    steps = [
        ("reserve_venue", "venue", "/reservations", "/reservations/cancel"),
        ("order_catering", "catering", "/orders", "/orders/cancel"),
        ("charge_deposit", "payment", "/charges", "/refunds"),
        ("confirm", "notification", "/notifications", None),
    ]
    _, service, path, _ = steps[failing_step - 1]
    env.services[service].always_fail[path] = 409  # a business refusal: no retry
    workflow_id = await env.start()
    await env.until(workflow_id, "compensated")
    compensations = []
    for name, svc, _, undo in steps[: failing_step - 1]:
        calls = env.services[svc].calls_to(undo or "/none")
        assert len(calls) == 1, (name, calls)  # each exactly once
        assert calls[0].key == f"{workflow_id}:{name}:compensate"
        compensations.append(name)
    status = await env.orch.workflows.status(workflow_id)
    order = [e.step_name for e in status.execution_timeline if e.event == "compensation_succeeded"]
    assert order == list(reversed(compensations))
    assert status.workflow.error_details is not None
    assert status.workflow.error_details.step_name == steps[failing_step - 1][0]
    assert "HTTP 409" in (status.workflow.error_details.error_message or "")


async def test_transient_failures_are_retried_with_backoff(env: Env) -> None:
    env.services["catering"].fail["/orders"] = [503, 502]
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "completed", step=0.1)
    status = await env.orch.workflows.status(workflow_id)
    catering = next(s for s in status.steps if s.step_name == "order_catering")
    assert catering.retry_count == 2
    scheduled = [e.details for e in status.execution_timeline if e.event == "retry_scheduled"]
    assert [d["delay_seconds"] for d in scheduled] == [0.1, 0.2]
    keys = {c.key for c in env.services["catering"].calls}
    assert keys == {f"{workflow_id}:order_catering:forward"}


async def test_compensation_failure_parks_the_workflow_and_raises_an_alert(env: Env) -> None:
    env.services["payment"].always_fail["/charges"] = 402
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "compensation_failed", step=0.2)
    status = await env.orch.workflows.status(workflow_id)
    venue = next(s for s in status.steps if s.step_name == "reserve_venue")
    assert venue.compensation_status == "failed"
    assert venue.compensation_attempts == 2  # first try plus one retry
    catering = next(s for s in status.steps if s.step_name == "order_catering")
    assert catering.compensation_status == "completed"
    alerts = await env.orch.alerts.list_alerts(subject_id=workflow_id)
    assert len(alerts) == 1
    assert alerts[0].severity == "critical"
    assert "reserve_venue" in alerts[0].title

    # The operator fixes the venue service and retries the compensation.
    del env.services["venue"].always_fail["/reservations/cancel"]
    await env.orch.workflows.retry_compensation(workflow_id, actor="ops", reason="venue fixed")
    await env.advance_until(workflow_id, "compensated", step=0.2)
    assert await env.orch.alerts.list_alerts(subject_id=workflow_id) == []
    timeline = (await env.orch.workflows.status(workflow_id)).execution_timeline
    operator = [e for e in timeline if e.event == "compensation_retry_requested"]
    assert (operator[0].actor, operator[0].details["reason"]) == ("ops", "venue fixed")


async def test_compensation_marked_done_by_hand(env: Env) -> None:
    env.services["payment"].always_fail["/charges"] = 402
    env.services["venue"].always_fail["/reservations/cancel"] = 500
    workflow_id = await env.start()
    await env.advance_until(workflow_id, "compensation_failed", step=0.2)
    await env.orch.workflows.mark_compensated(
        workflow_id, "reserve_venue", actor="ops", note="cancelled by phone with the venue"
    )
    await env.until(workflow_id, "compensated")
    status = await env.orch.workflows.status(workflow_id)
    venue = next(s for s in status.steps if s.step_name == "reserve_venue")
    assert venue.compensation_status == "manual"


async def test_workflow_timeout_compensates(env: Env) -> None:
    env.services["payment"].always_fail["/charges"] = 503
    await env.orch.workflow_definitions.register(
        {
            **BOOKING,
            "version": "2.0.0",
            "timeout_minutes": 1,
            "steps": [
                *BOOKING["steps"][:2],
                {
                    **BOOKING["steps"][2],
                    "retry_policy": {"max_retries": 50, "initial_delay": 10_000},
                },
                BOOKING["steps"][3],
            ],
        },
        actor="t",
    )
    workflow_id = await env.start(workflow_version="2.0.0")
    await env.advance_until(workflow_id, "compensated", step=5)
    timeline = (await env.orch.workflows.status(workflow_id)).execution_timeline
    started = next(e for e in timeline if e.event == "compensation_started")
    assert started.details["reason"] == "workflow timed out after 1 min"
    assert started.details["steps"] == ["order_catering", "reserve_venue"]


FULL_SERVICE = {
    "name": "full-service",
    "version": "1.0.0",
    "timeout_minutes": 30,
    "steps": [
        call_step("reserve_venue", 1, "venue", "/reservations", compensate="/reservations/cancel"),
        {
            "name": "vendors",
            "type": "parallel",
            "order": 2,
            "branches": [
                {
                    "name": "food",
                    "steps": [
                        call_step(
                            "order_catering", 0, "catering", "/orders", compensate="/orders/cancel"
                        )
                    ],
                },
                {
                    "name": "photos",
                    "steps": [
                        call_step(
                            "book_photographer",
                            0,
                            "photographer",
                            "/bookings",
                            compensate="/bookings/cancel",
                        )
                    ],
                },
            ],
        },
        call_step("charge_deposit", 3, "payment", "/charges", compensate="/refunds"),
    ],
}


def _strip_order(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k != "order"}


for _branch in FULL_SERVICE["steps"][1]["branches"]:  # type: ignore[index]
    _branch["steps"] = [_strip_order(s) for s in _branch["steps"]]


async def test_parallel_branches_run_concurrently(env: Env) -> None:
    await env.orch.workflow_definitions.register(FULL_SERVICE, actor="t")
    env.services["catering"].delay = env.services["photographer"].delay = 0.3
    workflow_id = await env.start("full-service")
    await env.until(workflow_id, "completed")
    status = await env.orch.workflows.status(workflow_id)
    by_name = {s.step_name: s for s in status.steps}
    catering, photos = by_name["order_catering"], by_name["book_photographer"]
    assert catering.started_at is not None and photos.completed_at is not None
    # both branch calls overlapped in time: each started before the other finished
    calls = env.services["catering"].calls + env.services["photographer"].calls
    assert len(calls) == 2
    assert by_name["vendors"].status == "completed"
    assert status.workflow.context_data["book_photographer_id"] == "photographer-1"


async def test_parallel_with_a_failing_branch_compensates_what_completed(env: Env) -> None:
    await env.orch.workflow_definitions.register(FULL_SERVICE, actor="t")
    env.services["photographer"].always_fail["/bookings"] = 409
    workflow_id = await env.start("full-service")
    await env.until(workflow_id, "compensated")
    assert len(env.services["catering"].calls_to("/orders/cancel")) == 1
    assert len(env.services["venue"].calls_to("/reservations/cancel")) == 1
    assert env.services["photographer"].calls_to("/bookings/cancel") == []
    assert env.services["payment"].calls == []
    status = await env.orch.workflows.status(workflow_id)
    order = [e.step_name for e in status.execution_timeline if e.event == "compensation_succeeded"]
    assert order == ["order_catering", "reserve_venue"]
    assert status.workflow.error_details is not None
    assert status.workflow.error_details.step_name == "vendors"


DECIDING = {
    "name": "deciding",
    "version": "1.0.0",
    "steps": [
        {
            "name": "big_wedding",
            "type": "decision",
            "order": 1,
            "conditions": {
                "if": {"guests": {"gt": 150}},
                "then": "order_catering",
                "else": "confirm",
            },
        },
        call_step("order_catering", 2, "catering", "/orders"),
        call_step("confirm", 3, "notification", "/notifications"),
    ],
}


@pytest.mark.parametrize(("guests", "catering_called"), [(200, True), (80, False)])
async def test_decision_takes_either_branch(env: Env, guests: int, catering_called: bool) -> None:
    await env.orch.workflow_definitions.register(DECIDING, actor="t")
    workflow_id = await env.start("deciding", context_data={"wedding_id": "w", "guests": guests})
    await env.until(workflow_id, "completed")
    assert bool(env.services["catering"].calls) is catering_called
    assert len(env.services["notification"].calls) == 1
    status = await env.orch.workflows.status(workflow_id)
    catering = next(s for s in status.steps if s.step_name == "order_catering")
    assert catering.status == ("completed" if catering_called else "skipped")


async def test_delay_is_a_durable_timer(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {
            "name": "reminder",
            "timeout_minutes": 2880,
            "steps": [
                call_step("reserve_venue", 1, "venue", "/reservations"),
                {"name": "wait_a_day", "type": "delay", "order": 2, "delay_seconds": 86_400},
                call_step("confirm", 3, "notification", "/notifications"),
            ],
        },
        actor="t",
    )
    workflow_id = await env.start("reminder")
    await eventually(lambda: len(env.services["venue"].calls) == 1)

    async def waiting() -> bool:
        status = await env.orch.workflows.status(workflow_id)
        return (
            status.workflow.lease_owner is None
            and status.workflow.next_run_at is not None
            and status.workflow.next_run_at > env.clock.now()
        )

    await eventually(waiting)  # parked in the database, not in a sleeping coroutine
    assert env.runner.in_flight == 0
    await env.clock.advance(86_399)
    await asyncio.sleep(0.3)
    assert env.services["notification"].calls == []
    await env.clock.advance(1)
    await env.until(workflow_id, "completed")
    assert len(env.services["notification"].calls) == 1


# -- operators -----------------------------------------------------------------------------


async def test_pause_and_resume(env: Env) -> None:
    env.services["catering"].fail["/orders"] = [503]
    workflow_id = await env.start()
    await env.until(workflow_id, "retrying")
    paused = await env.orch.workflows.pause(workflow_id, actor="ops", reason="vendor call")
    assert paused.current_status == "paused"
    await env.clock.advance(60)
    await asyncio.sleep(0.3)
    assert len(env.services["catering"].calls) == 1  # nothing runs while paused
    resumed = await env.orch.workflows.resume(workflow_id, actor="ops")
    assert resumed.current_status == "retrying"
    await env.until(workflow_id, "completed")
    with pytest.raises(ConflictError, match="cannot pause a workflow that is completed"):
        await env.orch.workflows.pause(workflow_id, actor="ops")


async def test_cancel_stops_without_compensating(env: Env) -> None:
    env.services["catering"].fail["/orders"] = [503]
    workflow_id = await env.start()
    await env.until(workflow_id, "retrying")
    cancelled = await env.orch.workflows.cancel(workflow_id, actor="ops", reason="couple called")
    assert cancelled.current_status == "cancelled"
    await env.clock.advance(60)
    await asyncio.sleep(0.3)
    assert env.services["venue"].calls_to("/reservations/cancel") == []
    assert len(env.services["catering"].calls) == 1


async def test_operator_compensate_undoes_a_completed_workflow(env: Env) -> None:
    workflow_id = await env.start()
    await env.until(workflow_id, "completed")
    await env.orch.workflows.compensate(
        workflow_id,
        {
            "reason": "wedding called off",
            "compensation_strategy": "custom",
            "custom_steps": ["charge_deposit", "reserve_venue"],
        },
        actor="ops",
    )
    await env.until(workflow_id, "compensated")
    assert len(env.services["payment"].calls_to("/refunds")) == 1
    assert len(env.services["venue"].calls_to("/reservations/cancel")) == 1
    assert env.services["catering"].calls_to("/orders/cancel") == []


async def test_retry_a_failed_workflow_from_a_step(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start("no-undo")
    await env.until(workflow_id, "failed")
    del env.services["payment"].always_fail["/charges"]
    with pytest.raises(ValidationFailed, match="from_step needs from_step"):
        await env.orch.workflows.retry(workflow_id, {"retry_strategy": "from_step"}, actor="o")
    await env.orch.workflows.retry(
        workflow_id, {"retry_strategy": "from_step", "from_step": 2}, actor="ops"
    )
    await env.until(workflow_id, "completed")
    # steps 2.. ran again with the same keys: the participant replays, no second effect
    catering = env.services["catering"]
    assert len(catering.calls) == 2
    assert len(catering.effects) == 1
    assert len(env.services["venue"].calls) == 1


async def test_retry_current_step_of_a_failed_workflow(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start("no-undo")
    await env.until(workflow_id, "failed")
    del env.services["payment"].always_fail["/charges"]
    await env.orch.workflows.retry(workflow_id, actor="ops")
    await env.until(workflow_id, "completed")
    assert len(env.services["catering"].calls) == 1


async def test_skip_a_failed_step_with_a_supplied_output(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start("no-undo")
    await env.until(workflow_id, "failed")
    await env.orch.workflows.skip_step(
        workflow_id,
        "charge_deposit",
        output={"id": "paid-by-bank-transfer"},
        actor="ops",
        reason="couple paid by transfer",
    )
    await env.until(workflow_id, "completed")
    status = await env.orch.workflows.status(workflow_id)
    assert status.workflow.context_data["charge_deposit_id"] == "paid-by-bank-transfer"
    charge = next(s for s in status.steps if s.step_name == "charge_deposit")
    assert charge.status == "skipped"
    skipped = [e for e in status.execution_timeline if e.event == "step_skipped"]
    assert (skipped[0].actor, skipped[0].details["reason"]) == ("ops", "couple paid by transfer")


async def test_retry_refused_after_compensation(env: Env) -> None:
    env.services["payment"].always_fail["/charges"] = 402
    workflow_id = await env.start()
    await env.until(workflow_id, "compensated")
    with pytest.raises(ConflictError, match="start a new workflow instead"):
        await env.orch.workflows.retry(workflow_id, actor="ops")


async def test_batch_retry_preview_and_results(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["payment"].always_fail["/charges"] = 402
    ids = [await env.start("no-undo", correlation_id=f"batch-{i}") for i in range(3)]
    for workflow_id in ids:
        await env.until(workflow_id, "failed")
    done = await env.start(correlation_id="batch-ok")  # compensates: not "failed"
    await env.until(done, "compensated")
    preview = await env.orch.workflows.batch(
        "retry", actor="ops", dry_run=True, status=["failed"], name="no-undo"
    )
    assert preview.matched == 3
    assert {str(w.id) for w in preview.preview} == set(ids)
    assert preview.results == []
    assert {str(i) for i in preview.workflow_ids} == set(ids)
    del env.services["payment"].always_fail["/charges"]
    applied = await env.orch.workflows.batch(
        "retry",
        actor="ops",
        status=["failed"],
        reason="payment fixed",
        workflow_ids=preview.workflow_ids,
    )
    assert [r.ok for r in applied.results] == [True, True, True]
    for workflow_id in ids:
        await env.until(workflow_id, "completed")
    ended = await env.orch.workflows.batch(
        "cancel", actor="ops", dry_run=True, status=["completed", "compensated"]
    )
    cancel_all = await env.orch.workflows.batch(
        "cancel",
        actor="ops",
        status=["completed", "compensated"],
        workflow_ids=ended.workflow_ids,
    )
    assert cancel_all.matched == 4
    assert {r.ok for r in cancel_all.results} == {False}
    assert "nothing to cancel" in (cancel_all.results[0].error or "")


async def test_list_filters_and_summary(env: Env) -> None:
    first = await env.start(correlation_id="w-a", wedding_id="11111111-1111-1111-1111-111111111111")
    await env.until(first, "completed")
    env.services["payment"].always_fail["/charges"] = 402
    second = await env.start(correlation_id="w-b")
    await env.until(second, "compensated")
    listed = await env.orch.workflows.list_workflows()
    assert listed.total == 2
    assert listed.status_summary["completed"] == 1
    assert listed.status_summary["compensated"] == 1
    assert set(listed.status_summary) >= {
        "pending",
        "running",
        "completed",
        "failed",
        "compensating",
    }
    by_wedding = await env.orch.workflows.list_workflows(
        wedding_id="11111111-1111-1111-1111-111111111111"
    )
    assert [w.correlation_id for w in by_wedding.workflows] == ["w-a"]
    entry = by_wedding.workflows[0]
    assert entry.progress_percentage == 100.0
    assert entry.duration_ms is not None
    with pytest.raises(ValidationFailed, match="status"):
        await env.orch.workflows.list_workflows(status=["exploded"])


async def test_retry_failed_steps_reruns_only_the_failed_branch(env: Env) -> None:
    await env.orch.workflow_definitions.register(
        {**FULL_SERVICE, "name": "vendors-no-undo", "compensation_strategy": "none"}, actor="t"
    )
    env.services["photographer"].always_fail["/bookings"] = 409
    workflow_id = await env.start("vendors-no-undo")
    await env.until(workflow_id, "failed")
    del env.services["photographer"].always_fail["/bookings"]
    await env.orch.workflows.retry(workflow_id, {"retry_strategy": "failed_steps"}, actor="ops")
    await env.until(workflow_id, "completed")
    assert len(env.services["catering"].calls) == 1  # the branch that had succeeded
    assert len(env.services["photographer"].calls) == 2
    assert len(env.services["payment"].calls) == 1

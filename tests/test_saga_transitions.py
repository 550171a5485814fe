"""The saga's rules as pure functions: planner, forward and compensating transitions,
operator actions. No database, no HTTP: a workflow state, an outcome, the time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchcore.errors import ConflictError, ValidationFailed
from orchcore.saga import compensation, forward, operator, planner
from orchcore.saga.execution import Outcome, idempotency_key
from orchcore.saga.models import WorkflowDefinition
from orchcore.saga.operator import OperatorRequest
from orchcore.saga.state import WorkflowState
from orchcore.saga.status import (
    OperatorAction,
    Phase,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)
from orchcore.storable import Unstorable, check_storable, loads_strict
from tests.support.sagas import BOOKING, call_step

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
ACTOR = "daemon:test"

PARALLEL = {
    "name": "fan",
    "steps": [
        call_step("reserve_venue", 1, "venue", "/reservations", compensate="/reservations/cancel"),
        {
            "name": "vendors",
            "type": "parallel",
            "order": 2,
            "branches": [
                {"name": "food", "steps": [call_step("order", 0, "catering", "/o")]},
                {"name": "photos", "steps": [call_step("book", 0, "photographer", "/b")]},
            ],
        },
    ],
}
for _branch in PARALLEL["steps"][1]["branches"]:  # type: ignore[index]
    for _step in _branch["steps"]:
        _step.pop("order")


def workflow(definition: dict[str, Any] = BOOKING) -> WorkflowState:
    return WorkflowState.fresh(
        workflow_id=uuid.uuid4(),
        definition=WorkflowDefinition.model_validate(definition),
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


def answered(status: int = 201, output: Any = None) -> Outcome:
    ok = 200 <= status < 300
    return Outcome(
        ok=ok,
        transient=status >= 500,
        request={},
        output=output if output is not None else {"id": "x-1"},
        status_code=status,
        error=None if ok else f"HTTP {status}",
    )


UNANSWERED = Outcome(
    ok=False, transient=True, request={}, error="timed out after 5s", outcome_unknown=True
)
REFUSED_CONNECTION = Outcome(ok=False, transient=True, request={}, error="connection refused")


def attempt(state: WorkflowState, name: str, outcome: Outcome) -> None:
    step = state.steps[name]
    forward.start_attempt(state, step, NOW, ACTOR)
    forward.apply_attempt(state, step, outcome, NOW, ACTOR)


def exhaust(state: WorkflowState, name: str, outcome: Outcome) -> None:
    for _ in range(state.steps[name].max_retries + 1):
        attempt(state, name, outcome)


def events(state: WorkflowState) -> list[WorkflowEvent]:
    return [e.event for e in state.events]


# -- unknown outcomes -----------------------------------------------------------------------


def test_an_unanswered_step_ends_uncertain_and_is_compensated() -> None:
    state = workflow()
    attempt(state, "reserve_venue", answered())
    exhaust(state, "order_catering", UNANSWERED)
    catering = state.steps["order_catering"]
    assert catering.status == StepStatus.UNCERTAIN
    assert WorkflowEvent.STEP_UNCERTAIN in events(state)
    action = planner.plan(state, NOW)
    assert isinstance(action, planner.BeginCompensation)
    assert "outcome is unknown" in action.reason
    compensation.begin_compensation(state, action.reason, NOW, ACTOR)
    # undone most recent first: the uncertain step before the venue it followed
    assert [s.name for s in planner.compensation_targets(state)] == [
        "order_catering",
        "reserve_venue",
    ]


def test_a_step_that_never_reached_its_service_is_failed_and_not_compensated() -> None:
    state = workflow()
    attempt(state, "reserve_venue", answered())
    exhaust(state, "order_catering", REFUSED_CONNECTION)
    assert state.steps["order_catering"].status == StepStatus.FAILED
    compensation.begin_compensation(state, "failed", NOW, ACTOR)
    assert [s.name for s in planner.compensation_targets(state)] == ["reserve_venue"]


def test_one_unanswered_attempt_among_refused_ones_makes_the_step_uncertain() -> None:
    state = workflow()
    attempt(state, "reserve_venue", UNANSWERED)
    attempt(state, "reserve_venue", REFUSED_CONNECTION)
    attempt(state, "reserve_venue", REFUSED_CONNECTION)
    assert state.steps["reserve_venue"].status == StepStatus.UNCERTAIN


def test_stopping_forward_settles_what_was_under_way() -> None:
    state = workflow()
    attempt(state, "reserve_venue", answered())
    attempt(state, "order_catering", UNANSWERED)  # retrying, and may have taken effect
    forward.start_attempt(state, state.steps["charge_deposit"], NOW, ACTOR)  # cut off
    compensation.settle_unfinished(state, NOW)
    statuses = {name: step.status for name, step in state.steps.items()}
    assert statuses == {
        "reserve_venue": StepStatus.COMPLETED,
        "order_catering": StepStatus.UNCERTAIN,
        "charge_deposit": StepStatus.UNCERTAIN,
        "confirm": StepStatus.CANCELLED,
    }


def test_a_late_answer_resolves_an_uncertain_step() -> None:
    state = workflow()
    step = state.steps["reserve_venue"]
    forward.start_attempt(state, step, NOW, ACTOR)
    operator.apply(state, OperatorRequest(OperatorAction.CANCEL, {}, "ops", "no"), NOW, "")
    assert step.status == StepStatus.UNCERTAIN
    forward.apply_attempt(state, step, answered(), NOW, ACTOR)
    assert step.status == StepStatus.COMPLETED  # it did take effect: known now


# -- generations, budgets -----------------------------------------------------------------


def test_retrying_a_failed_step_starts_a_new_idempotency_generation() -> None:
    state = workflow({**BOOKING, "compensation_strategy": "none"})
    attempt(state, "reserve_venue", answered())
    attempt(state, "order_catering", answered(402))
    compensation.begin_compensation(state, "failed", NOW, ACTOR)
    assert state.status == WorkflowStatus.FAILED
    catering = state.steps["order_catering"]
    first_key = idempotency_key(state, catering, "forward")
    operator.apply(state, OperatorRequest(OperatorAction.RETRY, {}, "ops", "fixed"), NOW, "")
    assert catering.generation == 2
    assert idempotency_key(state, catering, "forward") == f"{first_key}:2"
    assert first_key.endswith(":order_catering:forward")
    venue = state.steps["reserve_venue"]
    assert venue.generation == 1  # not retried


def test_retrying_an_uncertain_step_keeps_its_key() -> None:
    state = workflow({**BOOKING, "compensation_strategy": "none"})
    exhaust(state, "reserve_venue", UNANSWERED)
    compensation.begin_compensation(state, "unknown", NOW, ACTOR)
    operator.apply(state, OperatorRequest(OperatorAction.RETRY, {}, "ops", None), NOW, "")
    venue = state.steps["reserve_venue"]
    # the first request may have reserved the venue: the service must recognise it
    assert (venue.generation, venue.status, venue.outcome_unknown) == (1, "pending", True)


def test_max_retries_given_on_retry_is_kept_and_honoured() -> None:
    state = workflow({**BOOKING, "compensation_strategy": "none"})
    exhaust(state, "reserve_venue", answered(503))  # 1 + 2 retries, then failed
    compensation.begin_compensation(state, "failed", NOW, ACTOR)
    request = OperatorRequest(OperatorAction.RETRY, {"max_retries": 5}, "ops", None)
    operator.apply(state, request, NOW, "")
    venue = state.steps["reserve_venue"]
    assert (venue.max_retries, venue.retry_count) == (5, 0)
    for _ in range(5):
        attempt(state, "reserve_venue", answered(503))
    assert venue.status == StepStatus.RETRYING  # five retries allowed, five used
    attempt(state, "reserve_venue", answered(503))
    assert venue.status == StepStatus.FAILED


# -- operators ------------------------------------------------------------------------------


def test_an_action_outside_its_statuses_is_refused_with_what_it_needs() -> None:
    state = workflow()
    state.status = WorkflowStatus.COMPLETED
    with pytest.raises(ConflictError, match="cannot pause a workflow that is completed"):
        operator.apply(state, OperatorRequest(OperatorAction.PAUSE, {}, "ops", None), NOW, "")
    state.status = WorkflowStatus.COMPENSATED
    with pytest.raises(ConflictError, match="start a new workflow instead"):
        operator.apply(state, OperatorRequest(OperatorAction.RETRY, {}, "ops", None), NOW, "")


def test_an_action_is_audited_with_who_asked_and_who_applied_it() -> None:
    state = workflow()
    request = OperatorRequest(OperatorAction.PAUSE, {}, "token:alice", "vendor call")
    operator.apply(state, request, NOW, "daemon:a")
    assert state.status == WorkflowStatus.PAUSED
    (audit,) = state.audits
    assert (audit.actor, audit.action, audit.reason) == (
        "token:alice",
        "workflow.paused",
        "vendor call",
    )
    assert audit.details["applied_by"] == "daemon:a"
    assert state.events[-1].actor == "token:alice"


def test_a_skip_that_does_not_fit_changes_nothing() -> None:
    state = workflow()
    attempt(state, "reserve_venue", answered(409))
    before = dict(state.context)
    bad = OperatorRequest(
        OperatorAction.SKIP_STEP,
        {"step_name": "reserve_venue", "output": {"id": "ok\x00"}},
        "ops",
        "by phone",
    )
    with pytest.raises(ValidationFailed, match="u0000"):
        operator.apply(state, bad, NOW, "")
    assert state.context == before
    assert state.steps["reserve_venue"].status == StepStatus.FAILED


def test_skipping_a_failed_branch_step_lets_the_parallel_step_finish() -> None:
    state = workflow(PARALLEL)
    attempt(state, "reserve_venue", answered())
    forward.start_parallel(state, state.steps["vendors"], NOW, ACTOR)
    attempt(state, "order", answered())
    attempt(state, "book", answered(409))
    assert isinstance(planner.plan(state, NOW), planner.FinishParallel)
    forward.finish_parallel(state, state.steps["vendors"], NOW, ACTOR)
    compensation_none = state.definition.model_copy(update={"compensation_strategy": "none"})
    state.definition = compensation_none
    compensation.begin_compensation(state, "branch failed", NOW, ACTOR)
    assert state.status == WorkflowStatus.FAILED
    skip = OperatorRequest(
        OperatorAction.SKIP_STEP, {"step_name": "book", "output": {"id": "p-9"}}, "ops", "booked"
    )
    operator.apply(state, skip, NOW, "")
    assert state.steps["vendors"].status == StepStatus.RUNNING
    assert isinstance(planner.plan(state, NOW), planner.FinishParallel)
    forward.finish_parallel(state, state.steps["vendors"], NOW, ACTOR)
    assert state.steps["vendors"].status == StepStatus.COMPLETED
    assert isinstance(planner.plan(state, NOW), planner.Complete)
    assert state.context["book_id"] == "p-9"


# -- parallel branches wait without holding the workflow ---------------------------------


def test_a_parallel_step_waits_for_its_earliest_retry() -> None:
    state = workflow(PARALLEL)
    attempt(state, "reserve_venue", answered())
    forward.start_parallel(state, state.steps["vendors"], NOW, ACTOR)
    attempt(state, "order", answered())
    attempt(state, "book", answered(503))  # retry in 100 ms
    due = state.steps["book"].next_attempt_at
    assert due is not None
    assert planner.plan(state, NOW) == planner.Wait(due)
    assert isinstance(planner.plan(state, due), planner.RunParallel)
    assert planner.branch_due(state.steps["book"], due)
    assert not planner.branch_due(state.steps["book"], NOW)


def test_an_undone_start_leaves_no_trace() -> None:
    state = workflow()
    step = state.steps["reserve_venue"]
    state.take_changes()
    undo = forward.start_attempt(state, step, NOW, ACTOR)
    assert step.status == StepStatus.RUNNING
    undo()
    assert step.status == StepStatus.PENDING
    assert step.idempotency_key is None
    assert events(state) == []
    assert state.phase == Phase.FORWARD


# -- what PostgreSQL can store -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": {"b": "x\x00y"}}, "output.a.b"),
        ({"a": [1, float("nan")]}, "output.a.1"),
        ({"k\x00": 1}, "output"),
        ({"a": [float("inf")]}, "output.a.0"),
    ],
)
def test_unstorable_values_are_named(value: Any, where: str) -> None:
    with pytest.raises(Unstorable) as caught:
        check_storable(value, "output")
    assert caught.value.where == where


def test_strict_json_refuses_what_postgresql_refuses() -> None:
    assert loads_strict(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    cases = [
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": Infinity}', "Infinity is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ]
    for text, why in cases:
        with pytest.raises(ValueError, match=why):
            loads_strict(text)

"""The compensating run's state changes: pure functions, like :mod:`orchcore.saga.forward`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from orchcore.saga import planner
from orchcore.saga.execution import Outcome, idempotency_key
from orchcore.saga.forward import StartUndo
from orchcore.saga.state import AlertDraft, StepState, WorkflowState
from orchcore.saga.status import (
    STEP_UNSETTLED,
    CompensationStatus,
    Phase,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)

_UNDONE = (CompensationStatus.COMPLETED, CompensationStatus.MANUAL)


def settle_unfinished(state: WorkflowState, now: datetime) -> None:
    """Steps not yet done when the workflow stops going forward.

    A step whose request may have reached its service (an attempt cut off, or an
    attempt that went unanswered) becomes uncertain, so compensation includes it; the
    rest are cancelled: they never took effect.
    """
    for step in state.steps.values():
        if step.status not in STEP_UNSETTLED:
            continue
        may_have_run = step.type == "service_call" and (
            step.status == StepStatus.RUNNING or step.outcome_unknown
        )
        if may_have_run:
            step.status = StepStatus.UNCERTAIN
            step.outcome_unknown = True
            step.completion_seq = step.completion_seq or state.next_completion_seq()
        else:
            step.status = StepStatus.CANCELLED
        step.next_attempt_at = None
        step.dirty = True


def begin_compensation(state: WorkflowState, reason: str, now: datetime, actor: str) -> None:
    request = state.compensation_request or {}
    strategy = request.get("strategy") or state.definition.compensation_strategy
    if strategy == "none":
        state.status = WorkflowStatus.FAILED
        state.completed_at = now
        state.next_run_at = None
        state.error_details = state.error_details or {
            "step_name": None,
            "error_message": reason,
            "retry_count": 0,
        }
        state.record(
            None,
            WorkflowEvent.FAILED,
            actor,
            now,
            reason=reason,
            compensation="none (the definition's strategy)",
        )
        return
    state.phase = Phase.COMPENSATE
    state.status = WorkflowStatus.COMPENSATING
    state.compensation_request = {
        **request,
        "strategy": strategy,
        "reason": request.get("reason") or reason,
    }
    settle_unfinished(state, now)
    targets = planner.compensation_targets(state)
    state.record(
        None,
        WorkflowEvent.COMPENSATION_STARTED,
        actor,
        now,
        reason=reason,
        strategy=strategy,
        steps=[s.name for s in targets],
    )


def start_attempt(
    state: WorkflowState, step: StepState, now: datetime, actor: str
) -> Callable[[], None]:
    """Mark the step's compensation as under way; returns what undoes the mark."""
    undo_step, undo_status = replace(step), state.status
    action = step.definition.compensation_action
    assert action is not None
    step.compensation_status = CompensationStatus.RUNNING
    step.attempt_deadline = now + timedelta(seconds=action.timeout_seconds)
    step.dirty = True
    state.status = WorkflowStatus.COMPENSATING
    state.record(
        step.name,
        WorkflowEvent.COMPENSATION_ATTEMPT_STARTED,
        actor,
        now,
        attempt=step.compensation_attempts + 1,
        idempotency_key=idempotency_key(state, step, "compensate"),
    )
    return StartUndo(state, step, undo_step, undo_status, state.events[-1])


def apply_attempt(
    state: WorkflowState, step: StepState, outcome: Outcome, now: datetime, actor: str
) -> None:
    step.dirty = True
    step.attempt_deadline = None
    step.compensation_attempts += 1
    attempt = step.compensation_attempts
    if outcome.ok:
        step.compensation_status = CompensationStatus.COMPLETED
        step.compensated_at = now
        step.compensation_error = None
        step.compensation_next_attempt_at = None
        step.status = StepStatus.COMPENSATED
        state.record(
            step.name,
            WorkflowEvent.COMPENSATION_SUCCEEDED,
            actor,
            now,
            attempt=attempt,
            status_code=outcome.status_code,
        )
        return
    action = step.definition.compensation_action
    assert action is not None
    policy = action.retry_policy
    step.compensation_error = outcome.error
    state.record(
        step.name,
        WorkflowEvent.COMPENSATION_ATTEMPT_FAILED,
        actor,
        now,
        attempt=attempt,
        error=outcome.error,
        status_code=outcome.status_code,
    )
    if outcome.transient and attempt <= policy.max_retries:
        delay = max(policy.delay_seconds(attempt), outcome.retry_after or 0.0)
        step.compensation_status = CompensationStatus.RETRYING
        step.compensation_next_attempt_at = now + timedelta(seconds=delay)
        state.record(
            step.name,
            WorkflowEvent.COMPENSATION_RETRY_SCHEDULED,
            actor,
            now,
            at=step.compensation_next_attempt_at.isoformat(),
            delay_seconds=round(delay, 3),
        )
        return
    _needs_a_person(state, step, outcome.error, attempt, now, actor)


def _needs_a_person(
    state: WorkflowState,
    step: StepState,
    error: str | None,
    attempts: int,
    now: datetime,
    actor: str,
) -> None:
    step.compensation_status = CompensationStatus.FAILED
    step.compensation_next_attempt_at = None
    state.status = WorkflowStatus.COMPENSATION_FAILED
    state.next_run_at = None
    state.error_details = {
        "step_name": step.name,
        "error_message": error,
        "retry_count": attempts,
        "phase": "compensate",
    }
    state.alerts.append(
        AlertDraft(
            kind="compensation_failed",
            severity="critical",
            title=f"workflow {state.name} {state.correlation_id}: compensation of "
            f"{step.name} failed; needs manual intervention",
            details={
                "workflow_id": str(state.id),
                "step_name": step.name,
                "error": error,
                "attempts": attempts,
                "wedding_id": str(state.wedding_id) if state.wedding_id else None,
            },
        )
    )
    state.record(
        step.name,
        WorkflowEvent.COMPENSATION_FAILED,
        actor,
        now,
        error=error,
        attempts=attempts,
        needs="manual intervention",
    )


def finish(state: WorkflowState, now: datetime, actor: str) -> None:
    state.status = WorkflowStatus.COMPENSATED
    state.completed_at = now
    state.next_run_at = None
    state.record(
        None,
        WorkflowEvent.COMPENSATED,
        actor,
        now,
        compensated=[s.name for s in state.steps.values() if s.compensation_status in _UNDONE],
    )

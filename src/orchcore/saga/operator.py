"""What each operator action does to a workflow: pure functions over its state.

The same function applies an action whether the store applies it at once (no daemon
holds the workflow) or the daemon driving the workflow applies it at its next commit
(the action was queued while a call was in flight), so an action means one thing and
is never overwritten by a commit that did not know of it.

Each function checks the action applies (:data:`~orchcore.saga.status.ALLOWED_FROM`
and the step's own state), raising ConflictError, NotFoundError or ValidationFailed
otherwise, then changes the state and records the timeline event and the audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchcore.errors import ConflictError, NotFoundError, ValidationFailed
from orchcore.saga.compensation import settle_unfinished
from orchcore.saga.models import CompensateWorkflowRequest, RetryWorkflowRequest
from orchcore.saga.paths import PathError, apply_output
from orchcore.saga.state import AuditDraft, StepState, WorkflowState
from orchcore.saga.status import (
    ACTION_VERBS,
    ALLOWED_FROM,
    STEP_DONE,
    STEP_ENDED_BADLY,
    STEP_MAY_HAVE_EFFECT,
    CompensationStatus,
    OperatorAction,
    Phase,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)
from orchcore.storable import Unstorable, check_storable
from orchcore.validation import parse

_S = WorkflowStatus


@dataclass(frozen=True)
class OperatorRequest:
    """One operator's action with its parameters, as given or as queued."""

    action: OperatorAction
    params: dict[str, Any]
    actor: str
    reason: str | None


def require_status(state: WorkflowState, action: OperatorAction) -> None:
    allowed = ALLOWED_FROM[action]
    if state.status in allowed:
        return
    if action == OperatorAction.CANCEL:
        raise ConflictError(f"workflow is {state.status}; nothing to cancel")
    hint = ""
    if state.status == _S.COMPENSATED and action == OperatorAction.RETRY:
        hint = "; its effects were undone: start a new workflow instead"
    raise ConflictError(
        f"cannot {ACTION_VERBS[action]} a workflow that is {state.status} (it must be "
        f"{' or '.join(sorted(allowed))}){hint}"
    )


def apply(state: WorkflowState, request: OperatorRequest, now: datetime, by: str) -> WorkflowEvent:
    """Apply one operator action to ``state`` (``by``: who applies it, for the audit);
    returns the timeline event that records it."""
    require_status(state, request.action)
    before = state.status
    event, step_name, details = _ACTIONS[request.action](state, request, now)
    state.record(
        step_name,
        event,
        request.actor,
        now,
        reason=request.reason,
        **{"from": before, "to": state.status},
        **details,
    )
    state.audits.append(
        AuditDraft(
            actor=request.actor,
            action=f"workflow.{event}",
            reason=request.reason,
            details={"step": step_name, **details, **({"applied_by": by} if by else {})},
            occurred_at=now,
        )
    )
    return event


Result = tuple[WorkflowEvent, str | None, dict[str, Any]]


def _pause(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    state.paused_from = state.status
    state.status = _S.PAUSED
    return WorkflowEvent.PAUSED, None, {}


def _resume(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    state.status = state.paused_from or _S.RUNNING
    state.paused_from = None
    state.next_run_at = now
    return WorkflowEvent.RESUMED, None, {}


def _cancel(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Stop where it is, without compensating (compensate undoes)."""
    settle_unfinished(state, now)
    state.status = _S.CANCELLED
    state.completed_at = now
    state.next_run_at = None
    state.paused_from = None
    return WorkflowEvent.CANCELLED, None, {}


def _compensate(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Undo what may have taken effect: all, the definition's partial set, or named steps."""
    req = parse(CompensateWorkflowRequest, {"reason": request.reason, **request.params})
    unknown = sorted(set(req.custom_steps or []) - set(state.steps))
    if unknown:
        raise ValidationFailed("custom_steps", f"no step {unknown[0]!r}")
    if req.compensation_strategy == "partial" and not state.definition.compensate_steps:
        raise ValidationFailed(
            "compensation_strategy", "the definition names no steps for partial compensation"
        )
    settle_unfinished(state, now)
    state.status = _S.COMPENSATING
    state.phase = Phase.COMPENSATE
    state.paused_from = None
    state.completed_at = None
    state.next_run_at = now
    state.compensation_request = {
        "strategy": req.compensation_strategy,
        "custom_steps": req.custom_steps,
        "reason": req.reason,
        "requested_by": request.actor,
    }
    details = {"strategy": req.compensation_strategy, "custom_steps": req.custom_steps}
    return WorkflowEvent.COMPENSATION_REQUESTED, None, details


def _retry(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Run again: the current step, every failed step, or everything from step N."""
    req = parse(RetryWorkflowRequest, {"reason": request.reason, **request.params})
    chosen = steps_to_retry(state, req)
    if not chosen:
        raise ConflictError("no step to retry: nothing failed or is waiting to retry")
    for step in chosen:
        _reset_for_retry(step, req)
    first = min((s.order for s in chosen if s.parent is None), default=None)
    state.current_step = sum(
        1 for s in state.top_level() if s.status in STEP_DONE and (first is None or s.order < first)
    )
    _run_forward_again(state, now)
    state.paused_from = None
    state.compensation_request = None
    details = {
        "strategy": req.retry_strategy,
        "from_step": req.from_step,
        "max_retries": req.max_retries,
        "generations": {s.name: s.generation for s in chosen if s.type == "service_call"},
    }
    return WorkflowEvent.RETRY_REQUESTED, None, details


def steps_to_retry(state: WorkflowState, req: RetryWorkflowRequest) -> list[StepState]:
    steps = list(state.steps.values())
    if req.retry_strategy == "from_step":
        assert req.from_step is not None
        top = [s for s in steps if s.parent is None and s.order >= req.from_step]
        parents = {s.name for s in top}
        return top + [s for s in steps if s.parent in parents]
    again = (StepStatus.FAILED, StepStatus.UNCERTAIN, StepStatus.RETRYING)
    if req.retry_strategy == "failed_steps":
        chosen = [s for s in steps if s.status in (*again, StepStatus.CANCELLED)]
    else:
        chosen = [s for s in steps if s.status in again]
        if not chosen:
            chosen = [s for s in state.top_level() if s.status == StepStatus.CANCELLED][:1]
    parents = {s.parent for s in chosen if s.parent}
    return chosen + [s for s in steps if s.name in parents and s not in chosen]


def _reset_for_retry(step: StepState, req: RetryWorkflowRequest) -> None:
    # A step that failed with a definite answer gets a new idempotency key: the service
    # may have stored that answer under the old one. A step whose effect may exist
    # (it completed, or an attempt went unanswered) keeps its key, so the service
    # recognises the request instead of acting twice.
    if step.type == "service_call" and not (
        step.status in STEP_MAY_HAVE_EFFECT or step.outcome_unknown
    ):
        step.generation += 1
        step.outcome_unknown = False
    if step.status == StepStatus.UNCERTAIN:
        step.outcome_unknown = True
    step.status = StepStatus.PENDING
    if req.max_retries is not None:
        step.max_retries = req.max_retries
        step.retry_count = 0
    if req.retry_strategy == "from_step":
        step.output_data = None
    step.error_message = None
    step.next_attempt_at = None
    step.attempt_deadline = None
    step.completed_at = None
    step.completion_seq = None
    step.compensation_status = None
    step.compensation_attempts = 0
    step.compensation_error = None
    step.compensation_next_attempt_at = None
    step.compensated_at = None
    step.dirty = True


def _run_forward_again(state: WorkflowState, now: datetime) -> None:
    state.status = _S.RUNNING
    state.phase = Phase.FORWARD
    state.completed_at = None
    state.next_run_at = now
    state.error_details = None


def _skip_step(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Treat a step as done with a supplied output, and carry on."""
    name = str(request.params.get("step_name") or "")
    output = request.params.get("output") or {}
    step = state.steps.get(name)
    if step is None:
        raise NotFoundError("step", name)
    skippable = (*STEP_ENDED_BADLY, StepStatus.RETRYING, StepStatus.PENDING)
    if step.status not in skippable:
        raise ConflictError(
            f"step {name} is {step.status}; only a failed, uncertain or waiting step can be skipped"
        )
    if not isinstance(output, dict):
        raise ValidationFailed("output", "must be a JSON object")
    try:
        check_storable(output, "output")
        apply_output(step.definition.output_mapping, output, state.context)
    except Unstorable as exc:
        raise ValidationFailed(exc.where or "output", exc.why) from None
    except PathError as exc:
        raise ValidationFailed("output", f"does not fit the step's output_mapping: {exc}") from None
    step.status = StepStatus.SKIPPED
    step.output_data = output
    step.error_message = None
    step.next_attempt_at = None
    step.attempt_deadline = None
    step.compensation_status = None
    step.compensation_attempts = 0
    step.completed_at = now
    step.completion_seq = state.next_completion_seq()
    step.dirty = True
    parent = state.steps.get(step.parent) if step.parent else None
    if parent is not None and parent.status == StepStatus.FAILED:
        parent.status = StepStatus.RUNNING  # the planner looks at its branches again
        parent.error_message = None
        parent.dirty = True
    state.current_step = state.steps_done()
    if state.status != _S.PAUSED:
        _run_forward_again(state, now)
    else:
        state.error_details = None
    return WorkflowEvent.STEP_SKIPPED, name, {"output": output}


def _retry_compensation(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Try the failed compensation again (its retry budget starts afresh)."""
    for step in state.steps.values():
        if step.compensation_status == CompensationStatus.FAILED:
            step.compensation_status = CompensationStatus.PENDING
            step.compensation_attempts = 0
            step.compensation_next_attempt_at = None
            step.dirty = True
    _compensate_again(state, now)
    return WorkflowEvent.COMPENSATION_RETRY_REQUESTED, None, {}


def _mark_compensated(state: WorkflowState, request: OperatorRequest, now: datetime) -> Result:
    """Record that a person undid the step by hand; remaining compensations go on."""
    name = request.params.get("step_name")
    if not (request.reason or "").strip():
        raise ValidationFailed("note", "say what was done by hand")
    failed = [
        s
        for s in state.steps.values()
        if s.compensation_status == CompensationStatus.FAILED and (name is None or s.name == name)
    ]
    if not failed:
        raise NotFoundError("failed compensation", name or "(any step)")
    for step in failed:
        step.status = StepStatus.COMPENSATED
        step.compensation_status = CompensationStatus.MANUAL
        step.compensation_next_attempt_at = None
        step.compensated_at = now
        step.dirty = True
    _compensate_again(state, now)
    return WorkflowEvent.COMPENSATION_MARKED_DONE, name, {}


def _compensate_again(state: WorkflowState, now: datetime) -> None:
    state.status = _S.COMPENSATING
    state.phase = Phase.COMPENSATE
    state.next_run_at = now
    state.completed_at = None


_ACTIONS: dict[OperatorAction, Callable[[WorkflowState, OperatorRequest, datetime], Result]] = {
    OperatorAction.PAUSE: _pause,
    OperatorAction.RESUME: _resume,
    OperatorAction.CANCEL: _cancel,
    OperatorAction.COMPENSATE: _compensate,
    OperatorAction.RETRY: _retry,
    OperatorAction.SKIP_STEP: _skip_step,
    OperatorAction.RETRY_COMPENSATION: _retry_compensation,
    OperatorAction.MARK_COMPENSATED: _mark_compensated,
}

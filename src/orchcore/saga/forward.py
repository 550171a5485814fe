"""The forward run's state changes: pure functions of a workflow, a step and the time.

The drive asks the planner what to do, does the I/O, and applies what came of it here;
nothing here waits or touches the database, so every rule is tested without either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from orchcore.saga import planner
from orchcore.saga.execution import Outcome, idempotency_key
from orchcore.saga.paths import PathError, apply_output
from orchcore.saga.state import AlertDraft, Event, OutboxMessage, StepState, WorkflowState
from orchcore.saga.status import (
    STEP_DONE,
    STEP_ENDED_BADLY,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)


@dataclass
class StartUndo:
    """Takes back the marks of an attempt that was not made after all."""

    state: WorkflowState
    step: StepState
    saved_step: StepState
    saved_status: WorkflowStatus
    event: Event

    def __call__(self) -> None:
        self.step.__dict__.update(self.saved_step.__dict__)
        self.step.dirty = True
        self.state.status = self.saved_status
        if self.event in self.state.events:
            self.state.events.remove(self.event)


def start_attempt(
    state: WorkflowState, step: StepState, now: datetime, actor: str
) -> Callable[[], None]:
    """Mark the step's attempt as under way; returns what undoes the mark."""
    undo_step, undo_status = replace(step), state.status
    step.status = StepStatus.RUNNING
    step.started_at = step.started_at or now
    step.idempotency_key = idempotency_key(state, step, "forward")
    step.attempt_deadline = now + timedelta(seconds=step.definition.timeout_seconds)
    step.dirty = True
    if state.status in (WorkflowStatus.PENDING, WorkflowStatus.RETRYING):
        state.status = WorkflowStatus.RUNNING
    state.record(
        step.name,
        WorkflowEvent.ATTEMPT_STARTED,
        actor,
        now,
        attempt=step.retry_count + 1,
        service=step.definition.service_name,
        idempotency_key=step.idempotency_key,
    )
    return StartUndo(state, step, undo_step, undo_status, state.events[-1])


def apply_attempt(
    state: WorkflowState,
    step: StepState,
    outcome: Outcome,
    now: datetime,
    actor: str,
    messages: Sequence[OutboxMessage] = (),
) -> None:
    """What one attempt of a forward step came to (``messages``: what it publishes if it
    succeeded, checked and encoded already; they go out with the commit that records it)."""
    step.dirty = True
    step.attempt_deadline = None
    if step.status == StepStatus.UNCERTAIN:
        if _resolve_uncertain(state, step, outcome, now, actor):
            _publish(state, step.name, messages, now, actor)
        return
    if step.status != StepStatus.RUNNING:
        # An operator settled the step (cancelled it) while this attempt was out.
        state.record(
            step.name,
            WorkflowEvent.ATTEMPT_SUCCEEDED if outcome.ok else WorkflowEvent.ATTEMPT_FAILED,
            actor,
            now,
            late=True,
            status_code=outcome.status_code,
            error=outcome.error,
            kept=f"the step stays {step.status}",
        )
        return
    step.input_data = outcome.request
    if outcome.ok:
        try:
            apply_output(step.definition.output_mapping, outcome.output, state.context)
        except PathError as exc:  # checked by the call already; kept for safety
            outcome = replace(outcome, ok=False, transient=False, error=f"output_mapping: {exc}")
        else:
            _succeeded(state, step, outcome, now, actor)
            _publish(state, step.name, messages, now, actor)
            return
    _failed(state, step, outcome, now, actor)


def _publish(
    state: WorkflowState,
    step_name: str | None,
    messages: Sequence[OutboxMessage],
    now: datetime,
    actor: str,
) -> None:
    if not messages:
        return
    state.outbox.extend(messages)
    state.record(
        step_name,
        WorkflowEvent.MESSAGES_PUBLISHED,
        actor,
        now,
        messages=[{"queue": m.queue_name, "type": m.message_type} for m in messages],
    )


def publish(
    state: WorkflowState,
    step: StepState,
    outcome: Outcome,
    messages: Sequence[OutboxMessage],
    now: datetime,
    actor: str,
) -> None:
    """A publish step: its messages ride with the commit that records it completed; a
    refused one fails it (retried when the refusal was the database's)."""
    step.dirty = True
    step.started_at = step.started_at or now
    step.input_data = outcome.request
    if outcome.ok:
        complete_step(state, step, outcome.output, now)
        _publish(state, step.name, messages, now, actor)
        return
    _failed(state, step, outcome, now, actor)


def publish_at_end(
    state: WorkflowState,
    messages: Sequence[OutboxMessage],
    refusal: str | None,
    now: datetime,
    actor: str,
) -> None:
    """The messages of the workflow's end, committed with it. A refused one cannot hold
    the end back (what the workflow did is done): it is on the timeline and alerted."""
    if refusal is None:
        _publish(state, None, messages, now, actor)
        return
    state.record(None, WorkflowEvent.PUBLISH_REFUSED, actor, now, error=refusal)
    state.alerts.append(
        AlertDraft(
            kind="workflow_publish_refused",
            severity="warning",
            title=f"workflow {state.name} {state.correlation_id}: its end's messages "
            "were not published",
            details={"workflow_id": str(state.id), "error": refusal},
        )
    )


def _succeeded(
    state: WorkflowState, step: StepState, outcome: Outcome, now: datetime, actor: str
) -> None:
    state.record(
        step.name,
        WorkflowEvent.ATTEMPT_SUCCEEDED,
        actor,
        now,
        attempt=step.retry_count + 1,
        status_code=outcome.status_code,
        instance=outcome.instance_id,
        duration_ms=round(outcome.duration_ms, 1),
    )
    complete_step(state, step, outcome.output, now)


def complete_step(state: WorkflowState, step: StepState, output: object, now: datetime) -> None:
    step.status = StepStatus.COMPLETED
    step.output_data = output
    step.completed_at = now
    step.error_message = None
    step.next_attempt_at = None
    step.completion_seq = state.next_completion_seq()
    step.dirty = True
    state.current_step = state.steps_done()


def _failed(
    state: WorkflowState, step: StepState, outcome: Outcome, now: datetime, actor: str
) -> None:
    attempt = step.retry_count + 1
    step.outcome_unknown = step.outcome_unknown or outcome.outcome_unknown
    state.record(
        step.name,
        WorkflowEvent.ATTEMPT_FAILED,
        actor,
        now,
        attempt=attempt,
        status_code=outcome.status_code,
        error=outcome.error,
        instance=outcome.instance_id,
        transient=outcome.transient,
        outcome_unknown=outcome.outcome_unknown,
    )
    step.output_data = outcome.output
    step.error_message = outcome.error
    policy = step.definition.retry_policy
    if outcome.transient and step.retry_count < step.max_retries:
        step.retry_count += 1
        delay = max(policy.delay_seconds(step.retry_count), outcome.retry_after or 0.0)
        step.status = StepStatus.RETRYING
        step.next_attempt_at = now + timedelta(seconds=delay)
        if step.parent is None:
            state.status = WorkflowStatus.RETRYING
        state.record(
            step.name,
            WorkflowEvent.RETRY_SCHEDULED,
            actor,
            now,
            at=step.next_attempt_at.isoformat(),
            delay_seconds=round(delay, 3),
            retry=step.retry_count,
            of=step.max_retries,
        )
        return
    end_step_badly(
        state,
        step,
        now,
        actor,
        error=outcome.error,
        reason="retries exhausted" if outcome.transient else "not retryable",
        attempts=attempt,
    )


def end_step_badly(
    state: WorkflowState,
    step: StepState,
    now: datetime,
    actor: str,
    *,
    error: str | None,
    reason: str,
    attempts: int,
) -> None:
    """The step will not succeed: failed, or uncertain when its effect may exist."""
    step.next_attempt_at = None
    step.dirty = True
    if step.outcome_unknown:
        step.status = StepStatus.UNCERTAIN
        # Ordered with the completed steps, so compensation undoes it first.
        step.completion_seq = state.next_completion_seq()
        event, error = WorkflowEvent.STEP_UNCERTAIN, f"outcome unknown: {error}"
    else:
        step.status = StepStatus.FAILED
        event = WorkflowEvent.STEP_FAILED
    state.error_details = {
        "step_name": step.name,
        "error_message": error,
        "retry_count": step.retry_count,
        "phase": "forward",
    }
    state.record(step.name, event, actor, now, error=error, attempts=attempts, reason=reason)


def _resolve_uncertain(
    state: WorkflowState, step: StepState, outcome: Outcome, now: datetime, actor: str
) -> bool:
    """The answer of an attempt the workflow stopped waiting for came after all; True
    when it made the step completed.

    Before compensation reaches the step, a success makes it completed (its effect is
    known to exist) and a definite refusal makes it failed (nothing to undo)."""
    completed = False
    if step.compensation_status is None:
        if outcome.ok:
            step.status = StepStatus.COMPLETED
            step.output_data = outcome.output
            step.completed_at = now
            step.outcome_unknown = False
            completed = True
        elif not outcome.outcome_unknown:
            step.status = StepStatus.FAILED
            step.outcome_unknown = False
            step.error_message = outcome.error
    state.record(
        step.name,
        WorkflowEvent.ATTEMPT_SUCCEEDED if outcome.ok else WorkflowEvent.ATTEMPT_FAILED,
        actor,
        now,
        late=True,
        status_code=outcome.status_code,
        error=outcome.error,
        resolved=str(step.status),
    )
    return completed


# -- decisions, delays, the end ---------------------------------------------------------


def decide(state: WorkflowState, step: StepState, now: datetime, actor: str) -> None:
    conditions = step.definition.conditions  # type: ignore[union-attr]
    assert conditions is not None
    holds, target = planner.decision_target(conditions, state.context)
    later = [s for s in state.top_level() if s.order > step.order]
    if target == "end":
        skipped = later
    elif target is not None:
        skipped = [s for s in later if s.order < state.steps[target].order]
    else:
        skipped = []
    step.status = StepStatus.COMPLETED
    step.started_at = step.started_at or now
    step.completed_at = now
    step.output_data = {"condition_holds": holds, "next": target or "next step"}
    step.completion_seq = state.next_completion_seq()
    step.dirty = True
    for other in skipped:
        other.status = StepStatus.SKIPPED
        other.dirty = True
    state.current_step = state.steps_done()
    state.record(
        step.name,
        WorkflowEvent.DECISION,
        actor,
        now,
        condition_holds=holds,
        next=target or "next step",
        skipped=[s.name for s in skipped],
    )


def start_delay(state: WorkflowState, step: StepState, now: datetime, actor: str) -> None:
    seconds = step.definition.delay_seconds or 0.0  # type: ignore[union-attr]
    step.status = StepStatus.WAITING
    step.started_at = now
    step.next_attempt_at = now + timedelta(seconds=seconds)
    step.dirty = True
    state.record(
        step.name,
        WorkflowEvent.DELAY_STARTED,
        actor,
        now,
        until=step.next_attempt_at.isoformat(),
        seconds=seconds,
    )


def finish_delay(state: WorkflowState, step: StepState, now: datetime, actor: str) -> None:
    step.status = StepStatus.COMPLETED
    step.completed_at = now
    step.next_attempt_at = None
    step.completion_seq = state.next_completion_seq()
    step.dirty = True
    state.current_step = state.steps_done()
    state.record(step.name, WorkflowEvent.DELAY_FINISHED, actor, now)


def start_parallel(state: WorkflowState, step: StepState, now: datetime, actor: str) -> None:
    step.status = StepStatus.RUNNING
    step.started_at = step.started_at or now
    step.dirty = True
    if state.status in (WorkflowStatus.PENDING, WorkflowStatus.RETRYING):
        state.status = WorkflowStatus.RUNNING
    branches = sorted({s.branch for s in state.children(step.name) if s.branch})
    state.record(step.name, WorkflowEvent.PARALLEL_STARTED, actor, now, branches=branches)


def finish_parallel(state: WorkflowState, step: StepState, now: datetime, actor: str) -> None:
    """Every branch done (the step completes) or one ended badly (the step fails)."""
    children = state.children(step.name)
    step.dirty = True
    if all(child.status in STEP_DONE for child in children):
        step.status = StepStatus.COMPLETED
        step.completed_at = now
        step.completion_seq = state.next_completion_seq()
        state.current_step = state.steps_done()
        state.record(step.name, WorkflowEvent.PARALLEL_COMPLETED, actor, now)
        return
    bad = sorted({c.branch or c.name for c in children if c.status in STEP_ENDED_BADLY})
    step.status = StepStatus.FAILED
    step.error_message = f"branch {', '.join(bad)} failed"
    state.error_details = {
        "step_name": step.name,
        "error_message": step.error_message,
        "retry_count": 0,
        "phase": "forward",
    }
    state.record(step.name, WorkflowEvent.STEP_FAILED, actor, now, error=step.error_message)


def complete(state: WorkflowState, now: datetime, actor: str) -> None:
    state.status = WorkflowStatus.COMPLETED
    state.completed_at = now
    state.next_run_at = None
    state.current_step = state.steps_done()
    state.record(
        None,
        WorkflowEvent.COMPLETED,
        actor,
        now,
        duration_ms=round((now - state.started_at).total_seconds() * 1000),
    )

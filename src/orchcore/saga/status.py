"""The saga's vocabulary: every status, phase, timeline event and operator action.

One spelling each, used by the engine, the store, the faces and the console. SQL
cannot import them: the migrations' CHECK constraints, the partial index of due work
and the claim query repeat the sets in SQL, and a test compares those lists with
these (tests/test_saga_vocabulary.py).
"""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    PAUSED = "paused"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"


#: Statuses a daemon picks up and drives.
RUNNABLE: frozenset[WorkflowStatus] = frozenset(
    {
        WorkflowStatus.PENDING,
        WorkflowStatus.RUNNING,
        WorkflowStatus.RETRYING,
        WorkflowStatus.COMPENSATING,
    }
)
#: Statuses nothing moves on from by itself.
TERMINAL: frozenset[WorkflowStatus] = frozenset(
    {
        WorkflowStatus.COMPENSATED,
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.COMPENSATION_FAILED,
        WorkflowStatus.CANCELLED,
    }
)
#: Statuses that wait for a person.
NEEDS_PERSON: frozenset[WorkflowStatus] = frozenset({WorkflowStatus.COMPENSATION_FAILED})


class Phase(StrEnum):
    FORWARD = "forward"
    COMPENSATE = "compensate"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"  # a delay step's timer
    COMPLETED = "completed"
    FAILED = "failed"
    #: it may have taken effect: the request went out and no answer came back
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"


#: A step the workflow has got past.
STEP_DONE: frozenset[StepStatus] = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
#: A step that ended without success: the workflow compensates or stops there.
STEP_ENDED_BADLY: frozenset[StepStatus] = frozenset({StepStatus.FAILED, StepStatus.UNCERTAIN})
#: A step whose effect may exist, so compensation undoes it.
STEP_MAY_HAVE_EFFECT: frozenset[StepStatus] = frozenset(
    {StepStatus.COMPLETED, StepStatus.UNCERTAIN}
)
#: A step not yet settled, which stopping or compensating the workflow cancels.
STEP_UNSETTLED: frozenset[StepStatus] = frozenset(
    {StepStatus.PENDING, StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING}
)


class CompensationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    MANUAL = "manual"  # a person undid it by hand
    NOT_NEEDED = "not_needed"


#: A compensation with nothing more to do.
COMPENSATION_SETTLED: frozenset[CompensationStatus] = frozenset(
    {CompensationStatus.COMPLETED, CompensationStatus.MANUAL, CompensationStatus.NOT_NEEDED}
)


class WorkflowEvent(StrEnum):
    """Names of execution-timeline events (workflow_events.event)."""

    STARTED = "workflow_started"
    CLAIMED = "claimed"
    COMPLETED = "workflow_completed"
    COMPENSATED = "workflow_compensated"
    FAILED = "workflow_failed"
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_SUCCEEDED = "attempt_succeeded"
    ATTEMPT_FAILED = "attempt_failed"
    RETRY_SCHEDULED = "retry_scheduled"
    STEP_FAILED = "step_failed"
    STEP_UNCERTAIN = "step_uncertain"
    DECISION = "decision"
    DELAY_STARTED = "delay_started"
    DELAY_FINISHED = "delay_finished"
    PARALLEL_STARTED = "parallel_started"
    PARALLEL_COMPLETED = "parallel_completed"
    #: messages a step (or the workflow's end) publishes, committed with it
    MESSAGES_PUBLISHED = "messages_published"
    #: the end's messages could not be published (the end is recorded all the same)
    PUBLISH_REFUSED = "publish_refused"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_ATTEMPT_STARTED = "compensation_attempt_started"
    COMPENSATION_SUCCEEDED = "compensation_succeeded"
    COMPENSATION_ATTEMPT_FAILED = "compensation_attempt_failed"
    COMPENSATION_RETRY_SCHEDULED = "compensation_retry_scheduled"
    COMPENSATION_FAILED = "compensation_failed"
    DRIVE_CRASHED = "drive_crashed"
    PARKED = "workflow_parked"
    # operators
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    COMPENSATION_REQUESTED = "compensation_requested"
    RETRY_REQUESTED = "retry_requested"
    STEP_SKIPPED = "step_skipped"
    COMPENSATION_RETRY_REQUESTED = "compensation_retry_requested"
    COMPENSATION_MARKED_DONE = "compensation_marked_done"
    ACTION_QUEUED = "action_queued"
    ACTION_REFUSED = "action_refused"


#: Compensation events, told apart from the forward run's (the console draws them apart).
COMPENSATION_EVENTS: frozenset[WorkflowEvent] = frozenset(
    {
        WorkflowEvent.COMPENSATION_ATTEMPT_STARTED,
        WorkflowEvent.COMPENSATION_SUCCEEDED,
        WorkflowEvent.COMPENSATION_ATTEMPT_FAILED,
        WorkflowEvent.COMPENSATION_RETRY_SCHEDULED,
        WorkflowEvent.COMPENSATION_FAILED,
        WorkflowEvent.COMPENSATION_MARKED_DONE,
    }
)
#: Events that mean the drive got somewhere: a step's attempt ended, a step settled or
#: the workflow moved on. A commit carrying one resets the workflow's crash count.
PROGRESS_EVENTS: frozenset[WorkflowEvent] = frozenset(
    {
        WorkflowEvent.ATTEMPT_SUCCEEDED,
        WorkflowEvent.ATTEMPT_FAILED,
        WorkflowEvent.DECISION,
        WorkflowEvent.DELAY_STARTED,
        WorkflowEvent.DELAY_FINISHED,
        WorkflowEvent.PARALLEL_COMPLETED,
        WorkflowEvent.MESSAGES_PUBLISHED,
        WorkflowEvent.COMPENSATION_STARTED,
        WorkflowEvent.COMPENSATION_SUCCEEDED,
        WorkflowEvent.COMPENSATION_ATTEMPT_FAILED,
        WorkflowEvent.COMPLETED,
        WorkflowEvent.COMPENSATED,
        WorkflowEvent.FAILED,
    }
)


class OperatorAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    COMPENSATE = "compensate"
    RETRY = "retry"
    SKIP_STEP = "skip_step"
    RETRY_COMPENSATION = "retry_compensation"
    MARK_COMPENSATED = "mark_compensated"


_S = WorkflowStatus
#: The one table of which workflow statuses each operator action applies to: the engine
#: refuses the rest, and the console offers an action only where it applies.
ALLOWED_FROM: dict[OperatorAction, frozenset[WorkflowStatus]] = {
    OperatorAction.PAUSE: frozenset({_S.PENDING, _S.RUNNING, _S.RETRYING, _S.COMPENSATING}),
    OperatorAction.RESUME: frozenset({_S.PAUSED}),
    OperatorAction.CANCEL: frozenset(WorkflowStatus) - TERMINAL,
    OperatorAction.COMPENSATE: frozenset(
        {_S.PENDING, _S.RUNNING, _S.RETRYING, _S.PAUSED, _S.FAILED, _S.COMPLETED, _S.CANCELLED}
    ),
    OperatorAction.RETRY: frozenset({_S.FAILED, _S.RETRYING, _S.CANCELLED}),
    OperatorAction.SKIP_STEP: frozenset({_S.FAILED, _S.RETRYING, _S.PAUSED, _S.RUNNING}),
    OperatorAction.RETRY_COMPENSATION: frozenset({_S.COMPENSATION_FAILED}),
    OperatorAction.MARK_COMPENSATED: frozenset({_S.COMPENSATION_FAILED}),
}
#: How each action names itself in a refusal: "cannot <verb> a workflow that is ...".
ACTION_VERBS: dict[OperatorAction, str] = {
    OperatorAction.PAUSE: "pause",
    OperatorAction.RESUME: "resume",
    OperatorAction.CANCEL: "cancel",
    OperatorAction.COMPENSATE: "compensate",
    OperatorAction.RETRY: "retry",
    OperatorAction.SKIP_STEP: "skip a step of",
    OperatorAction.RETRY_COMPENSATION: "retry the compensation of",
    OperatorAction.MARK_COMPENSATED: "mark compensated",
}


def may(action: OperatorAction, status: str) -> bool:
    """Whether ``action`` applies to a workflow in ``status``."""
    return status in ALLOWED_FROM[action]

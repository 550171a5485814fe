"""A workflow as the engine holds it while changing it: loaded whole, changed in memory by
pure transitions, and written back as a whole (workflow row, changed step rows, new
timeline events, alerts, audit rows, the messages its steps publish) in one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from orchcore.saga.models import BranchStep, WorkflowDefinition, WorkflowStep
from orchcore.saga.status import (
    PROGRESS_EVENTS,
    STEP_DONE,
    CompensationStatus,
    Phase,
    StepStatus,
    WorkflowEvent,
    WorkflowStatus,
)

StepDefinition = WorkflowStep | BranchStep


@dataclass
class StepState:
    name: str
    type: str
    order: int
    parent: str | None
    branch: str | None
    definition: StepDefinition
    max_retries: int
    status: StepStatus = StepStatus.PENDING
    retry_count: int = 0
    generation: int = 1
    outcome_unknown: bool = False
    input_data: Any = None
    output_data: Any = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempt_deadline: datetime | None = None
    completion_seq: int | None = None
    idempotency_key: str | None = None
    compensation_status: CompensationStatus | None = None
    compensation_attempts: int = 0
    compensation_error: str | None = None
    compensation_next_attempt_at: datetime | None = None
    compensated_at: datetime | None = None
    dirty: bool = False

    @property
    def compensable(self) -> bool:
        """Has a compensation action of its own."""
        return getattr(self.definition, "compensation_action", None) is not None

    def as_record(self) -> dict[str, Any]:
        """The columns the commit statement writes, JSON-ready."""
        return {
            "step_name": self.name,
            "status": self.status,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "generation": self.generation,
            "outcome_unknown": self.outcome_unknown,
            "input_data": self.input_data,
            "output_data": self.output_data,
            "error_message": self.error_message,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "attempt_deadline": _iso(self.attempt_deadline),
            "completion_seq": self.completion_seq,
            "idempotency_key": self.idempotency_key,
            "compensation_status": self.compensation_status,
            "compensation_attempts": self.compensation_attempts,
            "compensation_error": self.compensation_error,
            "compensation_next_attempt_at": _iso(self.compensation_next_attempt_at),
            "compensated_at": _iso(self.compensated_at),
        }


@dataclass
class Event:
    step_name: str | None
    event: WorkflowEvent
    details: dict[str, Any]
    actor: str
    occurred_at: datetime

    def as_record(self) -> dict[str, Any]:
        return {
            "step_name": self.step_name,
            "event": self.event,
            "details": self.details,
            "actor": self.actor,
            "occurred_at": _iso(self.occurred_at),
        }


@dataclass
class AlertDraft:
    kind: str
    severity: str
    title: str
    details: dict[str, Any]

    def as_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "details": self.details,
        }


@dataclass(frozen=True)
class OutboxMessage:
    """A message a step publishes, checked against its queue and encoded (see
    :mod:`orchcore.saga.outbox`); the commit that records the step sends it."""

    step_name: str | None  # None: published as the workflow ends
    queue_name: str
    topic: bool  # a topic fans it out to the queues bound to its type
    message_type: str
    message: str  # PGMQ's message (orch's envelope) as JSON text
    headers: str | None  # the sender's headers as JSON text
    ttl_seconds: int | None
    delay_seconds: int
    correlation_id: str | None
    producer: str | None
    size_bytes: int

    def as_record(self) -> dict[str, Any]:
        return {
            "queue_name": self.queue_name,
            "topic": self.topic,
            "message_type": self.message_type,
            "message": self.message,
            "headers": self.headers,
            "ttl_seconds": self.ttl_seconds,
            "delay_seconds": self.delay_seconds,
            "correlation_id": self.correlation_id,
            "producer": self.producer,
            "size_bytes": self.size_bytes,
        }


@dataclass
class AuditDraft:
    """An operator's action, audited with the commit that applies it."""

    actor: str
    action: str
    reason: str | None
    details: dict[str, Any]
    occurred_at: datetime

    def as_record(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "action": self.action,
            "reason": self.reason,
            "details": self.details,
            "occurred_at": _iso(self.occurred_at),
        }


@dataclass(frozen=True)
class Command:
    """An operator's action queued while a daemon held the workflow."""

    id: int
    action: str
    params: dict[str, Any]
    actor: str
    reason: str | None
    requested_at: datetime

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Command:
        return cls(
            id=int(data["id"]),
            action=data["action"],
            params=data["params"] or {},
            actor=data["actor"],
            reason=data["reason"],
            requested_at=_dt(data["requested_at"]) or datetime.min,
        )


@dataclass(frozen=True)
class CommandOutcome:
    command_id: int
    state: str  # applied | refused
    outcome: str | None

    def as_record(self) -> dict[str, Any]:
        return {"id": self.command_id, "state": self.state, "outcome": self.outcome}


@dataclass
class WorkflowState:
    id: UUID
    name: str
    version: str
    definition: WorkflowDefinition
    correlation_id: str
    wedding_id: UUID | None
    initiating_service: str
    status: WorkflowStatus
    phase: Phase
    current_step: int
    context: dict[str, Any]
    error_details: dict[str, Any] | None
    started_at: datetime
    completed_at: datetime | None
    timeout_at: datetime
    next_run_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    paused_from: WorkflowStatus | None
    compensation_request: dict[str, Any] | None
    trace_id: str | None
    revision: int
    #: the span this workflow continues (an API request's traceparent), if any
    trace_parent_span_id: str | None = None
    #: sampling, decided at the root: an unsampled workflow records error spans only
    trace_sampled: bool = True
    steps: dict[str, StepState] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    alerts: list[AlertDraft] = field(default_factory=list)
    audits: list[AuditDraft] = field(default_factory=list)
    settled_commands: list[CommandOutcome] = field(default_factory=list)
    #: messages to publish with the next commit (the outbox)
    outbox: list[OutboxMessage] = field(default_factory=list)
    #: set when something happened that gets the workflow further (see PROGRESS_EVENTS)
    progressed: bool = False

    # -- views -------------------------------------------------------------------------

    def top_level(self) -> list[StepState]:
        return sorted((s for s in self.steps.values() if s.parent is None), key=lambda s: s.order)

    def branch_steps(self, parent: str, branch: str) -> list[StepState]:
        return sorted(
            (s for s in self.steps.values() if s.parent == parent and s.branch == branch),
            key=lambda s: s.order,
        )

    def children(self, parent: str) -> list[StepState]:
        return [s for s in self.steps.values() if s.parent == parent]

    def next_completion_seq(self) -> int:
        seqs = [s.completion_seq for s in self.steps.values() if s.completion_seq is not None]
        return max(seqs, default=0) + 1

    def steps_done(self) -> int:
        """Top-level steps the workflow has got past: what current_step counts."""
        return sum(1 for s in self.top_level() if s.status in STEP_DONE)

    def in_flight(self) -> list[StepState]:
        """Steps whose attempt (forward or compensating) is under way."""
        return [
            s
            for s in self.steps.values()
            if s.status == StepStatus.RUNNING or s.compensation_status == CompensationStatus.RUNNING
        ]

    # -- recording -----------------------------------------------------------------------

    def record(
        self,
        step: str | None,
        event: WorkflowEvent,
        actor: str,
        when: datetime,
        /,
        **details: Any,
    ) -> None:
        self.events.append(Event(step, event, details, actor, when))
        if event in PROGRESS_EVENTS:
            self.progressed = True

    def has_changes(self) -> bool:
        return bool(
            self.events or self.alerts or self.audits or self.settled_commands or self.outbox
        ) or any(s.dirty for s in self.steps.values())

    def take_changes(self) -> Changes:
        """What is to be written now; changes made after this go into the next commit."""
        steps = [s for s in self.steps.values() if s.dirty]
        for step in steps:
            step.dirty = False
        changes = Changes(
            steps=steps,
            events=self.events,
            alerts=self.alerts,
            audits=self.audits,
            commands=self.settled_commands,
            progressed=self.progressed,
            messages=self.outbox,
        )
        self.events, self.alerts, self.audits, self.settled_commands = [], [], [], []
        self.outbox = []
        self.progressed = False
        return changes

    def give_back(self, changes: Changes) -> None:
        """A commit did not happen: keep its changes for the next one."""
        for step in changes.steps:
            step.dirty = True
        self.events = changes.events + self.events
        self.alerts = changes.alerts + self.alerts
        self.audits = changes.audits + self.audits
        self.settled_commands = changes.commands + self.settled_commands
        self.outbox = changes.messages + self.outbox
        self.progressed = self.progressed or changes.progressed

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_row(cls, row: Any, steps: list[dict[str, Any]]) -> WorkflowState:
        """From a distributed_workflows row and its workflow_steps rows (as JSON objects).

        Raises pydantic's ValidationError when the stored definition no longer validates.
        """
        definition = WorkflowDefinition.model_validate(row["workflow_definition"])
        paused_from = row["paused_from"]
        state = cls(
            id=row["id"],
            name=row["workflow_name"],
            version=row["workflow_version"],
            definition=definition,
            correlation_id=row["correlation_id"],
            wedding_id=row["wedding_id"],
            initiating_service=row["initiating_service"],
            status=WorkflowStatus(row["current_status"]),
            phase=Phase(row["phase"]),
            current_step=row["current_step"] or 0,
            context=row["context_data"] or {},
            error_details=row["error_details"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            timeout_at=row["timeout_at"],
            next_run_at=row["next_run_at"],
            lease_owner=row["lease_owner"],
            lease_until=row["lease_until"],
            paused_from=WorkflowStatus(paused_from) if paused_from else None,
            compensation_request=row["compensation_request"],
            trace_id=row["trace_id"],
            revision=row["revision"],
            trace_parent_span_id=row.get("trace_parent_span_id"),
            trace_sampled=row.get("trace_sampled", True) is not False,
        )
        definitions = step_definitions(definition)
        for data in steps:
            state.steps[data["step_name"]] = step_from_record(data, definitions)
        return state

    @classmethod
    def fresh(
        cls,
        *,
        workflow_id: UUID,
        definition: WorkflowDefinition,
        correlation_id: str,
        wedding_id: UUID | None,
        initiating_service: str,
        context: dict[str, Any],
        status: WorkflowStatus,
        started_at: datetime,
        timeout_at: datetime,
        lease_owner: str | None,
        lease_until: datetime | None,
        trace_id: str,
        trace_parent_span_id: str | None = None,
        trace_sampled: bool = True,
    ) -> WorkflowState:
        """A workflow just started: every step pending."""
        state = cls(
            id=workflow_id,
            name=definition.name,
            version=definition.version,
            definition=definition,
            correlation_id=correlation_id,
            wedding_id=wedding_id,
            initiating_service=initiating_service,
            status=status,
            phase=Phase.FORWARD,
            current_step=0,
            context=context,
            error_details=None,
            started_at=started_at,
            completed_at=None,
            timeout_at=timeout_at,
            next_run_at=started_at,
            lease_owner=lease_owner,
            lease_until=lease_until,
            paused_from=None,
            compensation_request=None,
            trace_id=trace_id,
            revision=0,
            trace_parent_span_id=trace_parent_span_id,
            trace_sampled=trace_sampled,
        )
        for name, (step, parent, branch, order) in step_definitions(definition).items():
            state.steps[name] = StepState(
                name=name,
                type=step.type,
                order=order,
                parent=parent,
                branch=branch,
                definition=step,
                max_retries=step.retry_policy.max_retries,
            )
        return state


@dataclass
class Changes:
    """One commit's worth of what changed."""

    steps: list[StepState]
    events: list[Event]
    alerts: list[AlertDraft]
    audits: list[AuditDraft]
    commands: list[CommandOutcome]
    progressed: bool
    #: sent by the statement that writes the rest, or not at all
    messages: list[OutboxMessage] = field(default_factory=list)


StepDefinitions = dict[str, tuple[StepDefinition, str | None, str | None, int]]


def step_definitions(definition: WorkflowDefinition) -> StepDefinitions:
    """Every step by name: its definition, parent, branch and order."""
    found: StepDefinitions = {}
    for step in definition.steps:
        found[step.name] = (step, None, None, step.order)
        for branch in step.branches or []:
            for index, inner in enumerate(branch.steps):
                found[inner.name] = (inner, step.name, branch.name, index)
    return found


def step_from_record(data: dict[str, Any], definitions: StepDefinitions) -> StepState:
    definition, parent, branch, order = definitions[data["step_name"]]
    compensation = data["compensation_status"]
    max_retries = data.get("max_retries")
    return StepState(
        name=data["step_name"],
        type=data["step_type"],
        order=order,
        parent=parent,
        branch=branch,
        definition=definition,
        max_retries=definition.retry_policy.max_retries if max_retries is None else max_retries,
        status=StepStatus(data["status"]),
        retry_count=data["retry_count"] or 0,
        generation=data.get("generation") or 1,
        outcome_unknown=bool(data.get("outcome_unknown")),
        input_data=data["input_data"],
        output_data=data["output_data"],
        error_message=data["error_message"],
        started_at=_dt(data["started_at"]),
        completed_at=_dt(data["completed_at"]),
        next_attempt_at=_dt(data["next_attempt_at"]),
        attempt_deadline=_dt(data.get("attempt_deadline")),
        completion_seq=data["completion_seq"],
        idempotency_key=data["idempotency_key"],
        compensation_status=CompensationStatus(compensation) if compensation else None,
        compensation_attempts=data["compensation_attempts"] or 0,
        compensation_error=data["compensation_error"],
        compensation_next_attempt_at=_dt(data["compensation_next_attempt_at"]),
        compensated_at=_dt(data["compensated_at"]),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))

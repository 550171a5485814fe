"""A workflow as the runner holds it while driving it: loaded at claim, written back as a
whole (workflow row, changed step rows, new timeline events) in one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from orchcore.saga.models import BranchStep, WorkflowDefinition, WorkflowStep

StepDefinition = WorkflowStep | BranchStep


@dataclass
class StepState:
    name: str
    type: str
    order: int
    parent: str | None
    branch: str | None
    definition: StepDefinition
    status: str = "pending"
    retry_count: int = 0
    input_data: Any = None
    output_data: Any = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    completion_seq: int | None = None
    idempotency_key: str | None = None
    compensation_status: str | None = None
    compensation_attempts: int = 0
    compensation_error: str | None = None
    compensation_next_attempt_at: datetime | None = None
    compensated_at: datetime | None = None
    dirty: bool = False

    def as_record(self) -> dict[str, Any]:
        """The columns the commit statement writes, JSON-ready."""
        return {
            "step_name": self.name,
            "status": self.status,
            "retry_count": self.retry_count,
            "input_data": self.input_data,
            "output_data": self.output_data,
            "error_message": self.error_message,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "next_attempt_at": _iso(self.next_attempt_at),
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
    event: str
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


@dataclass
class WorkflowState:
    id: UUID
    name: str
    version: str
    definition: WorkflowDefinition
    correlation_id: str
    wedding_id: UUID | None
    initiating_service: str
    status: str
    phase: str
    current_step: int
    context: dict[str, Any]
    compensation_stack: list[str]
    error_details: dict[str, Any] | None
    started_at: datetime
    completed_at: datetime | None
    timeout_at: datetime
    next_run_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    paused_from: str | None
    compensation_request: dict[str, Any] | None
    trace_id: str | None
    revision: int
    steps: dict[str, StepState] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    alerts: list[AlertDraft] = field(default_factory=list)

    # -- views -------------------------------------------------------------------------

    def top_level(self) -> list[StepState]:
        return sorted((s for s in self.steps.values() if s.parent is None), key=lambda s: s.order)

    def branch_steps(self, parent: str, branch: str) -> list[StepState]:
        return sorted(
            (s for s in self.steps.values() if s.parent == parent and s.branch == branch),
            key=lambda s: s.order,
        )

    def next_completion_seq(self) -> int:
        seqs = [s.completion_seq for s in self.steps.values() if s.completion_seq is not None]
        return max(seqs, default=0) + 1

    def record(
        self, step: str | None, event: str, actor: str, when: datetime, /, **details: Any
    ) -> None:
        self.events.append(Event(step, event, details, actor, when))

    def dirty_steps(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.dirty]

    def take_changes(self) -> tuple[list[StepState], list[Event], list[AlertDraft]]:
        """What is to be written now; changes made after this go into the next commit."""
        steps = self.dirty_steps()
        for step in steps:
            step.dirty = False
        events, self.events = self.events, []
        alerts, self.alerts = self.alerts, []
        return steps, events, alerts

    def give_back(
        self, steps: list[StepState], events: list[Event], alerts: list[AlertDraft]
    ) -> None:
        """A commit did not happen: keep its changes for the next one."""
        for step in steps:
            step.dirty = True
        self.events = events + self.events
        self.alerts = alerts + self.alerts

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_row(cls, row: Any, steps: list[dict[str, Any]]) -> WorkflowState:
        definition = WorkflowDefinition.model_validate(row["workflow_definition"])
        state = cls(
            id=row["id"],
            name=row["workflow_name"],
            version=row["workflow_version"],
            definition=definition,
            correlation_id=row["correlation_id"],
            wedding_id=row["wedding_id"],
            initiating_service=row["initiating_service"],
            status=row["current_status"],
            phase=row["phase"],
            current_step=row["current_step"] or 0,
            context=row["context_data"] or {},
            compensation_stack=list(row["compensation_stack"] or []),
            error_details=row["error_details"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            timeout_at=row["timeout_at"],
            next_run_at=row["next_run_at"],
            lease_owner=row["lease_owner"],
            lease_until=row["lease_until"],
            paused_from=row["paused_from"],
            compensation_request=row["compensation_request"],
            trace_id=row["trace_id"],
            revision=row["revision"],
        )
        definitions = step_definitions(definition)
        for data in steps:
            state.steps[data["step_name"]] = step_from_record(data, definitions)
        return state

    def adopt_operator_fields(self, row: Any) -> None:
        """After an operator changed the workflow meanwhile: take their fields."""
        self.status = row["current_status"]
        self.phase = row["phase"]
        self.paused_from = row["paused_from"]
        self.compensation_request = row["compensation_request"]
        self.completed_at = row["completed_at"]
        self.next_run_at = row["next_run_at"]
        self.revision = row["revision"]


def step_definitions(
    definition: WorkflowDefinition,
) -> dict[str, tuple[StepDefinition, str | None, str | None, int]]:
    """Every step by name: its definition, parent, branch and order."""
    found: dict[str, tuple[StepDefinition, str | None, str | None, int]] = {}
    for step in definition.steps:
        found[step.name] = (step, None, None, step.order)
        for branch in step.branches or []:
            for index, inner in enumerate(branch.steps):
                found[inner.name] = (inner, step.name, branch.name, index)
    return found


def step_from_record(
    data: dict[str, Any], definitions: dict[str, tuple[StepDefinition, str | None, str | None, int]]
) -> StepState:
    definition, parent, branch, order = definitions[data["step_name"]]
    return StepState(
        name=data["step_name"],
        type=data["step_type"],
        order=order,
        parent=parent,
        branch=branch,
        definition=definition,
        status=data["status"],
        retry_count=data["retry_count"] or 0,
        input_data=data["input_data"],
        output_data=data["output_data"],
        error_message=data["error_message"],
        started_at=_dt(data["started_at"]),
        completed_at=_dt(data["completed_at"]),
        next_attempt_at=_dt(data["next_attempt_at"]),
        completion_seq=data["completion_seq"],
        idempotency_key=data["idempotency_key"],
        compensation_status=data["compensation_status"],
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

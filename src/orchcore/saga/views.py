"""What the faces read about workflows (the seed's response shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class WorkflowSummary(BaseModel):
    """One entry of the seed's GetWorkflowsResponse (plus what the console shows)."""

    id: UUID
    workflow_name: str
    workflow_version: str
    correlation_id: str
    wedding_id: UUID | None
    initiating_service: str
    current_status: str
    current_step: int
    total_steps: int
    progress_percentage: float
    started_at: datetime
    completed_at: datetime | None
    duration_ms: int | None
    next_run_at: datetime | None = None
    lease_owner: str | None = None
    failed_step: str | None = None
    error_message: str | None = None


class GetWorkflowsResponse(BaseModel):
    workflows: list[WorkflowSummary]
    status_summary: dict[str, int]
    total: int
    #: False when ``total`` is a lower bound: a filter beyond status, counted only so far
    total_exact: bool = True
    #: Given as ``after``, the page after this one (None: this page is the last)
    next_cursor: str | None = None


class ErrorDetails(BaseModel):
    step_name: str | None
    error_message: str | None
    retry_count: int = 0
    phase: str | None = None


class PendingAction(BaseModel):
    """An operator's action queued while a daemon drives the workflow: it applies at
    that daemon's next commit (when the call in flight ends)."""

    id: int
    action: str
    requested_by: str
    requested_at: datetime
    reason: str | None = None


class InFlightStep(BaseModel):
    """A step whose attempt is under way on a daemon: queued actions wait for it."""

    step_name: str
    direction: str  # forward | compensate
    deadline: datetime | None


class WorkflowDetail(BaseModel):
    id: UUID
    workflow_name: str
    workflow_version: str
    correlation_id: str
    wedding_id: UUID | None
    initiating_service: str
    current_status: str
    phase: str
    current_step: int
    total_steps: int
    context_data: dict[str, Any]
    started_at: datetime
    completed_at: datetime | None
    timeout_at: datetime
    next_run_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    compensation_request: dict[str, Any] | None
    error_details: ErrorDetails | None = None
    #: the workflow's trace (GET traces/{trace_id}; `orch trace show`)
    trace_id: str | None = None
    #: drives of this workflow that ended in an unexpected error, in a row
    drive_crashes: int = 0
    pending_actions: list[PendingAction] = Field(default_factory=list)
    #: with pending actions: the attempts they wait for (ending by their deadlines)
    in_flight: list[InFlightStep] = Field(default_factory=list)


class StepTiming(BaseModel):
    """When a step ran forward and when it was undone, as far as is known; an end that
    is None is still going. ``waits_until``: the retry (of either) it waits for."""

    ran_from: datetime | None = None
    ran_until: datetime | None = None
    undo_from: datetime | None = None
    undo_until: datetime | None = None
    waits_until: datetime | None = None


class StepView(BaseModel):
    id: UUID
    step_name: str
    step_type: str
    step_order: int
    parent_step: str | None
    branch_name: str | None
    service_name: str | None
    status: str
    input_data: Any = None
    output_data: Any = None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    retry_count: int
    max_retries: int | None
    #: the idempotency generation: an operator's retry of a failed step starts a new one
    generation: int = 1
    #: an attempt may have reached the service unanswered (the step may have taken effect)
    outcome_unknown: bool = False
    next_attempt_at: datetime | None
    #: when the attempt in flight ends at the latest
    attempt_deadline: datetime | None = None
    error_message: str | None
    idempotency_key: str | None
    compensation_status: str | None
    compensation_attempts: int
    compensation_error: str | None
    compensation_next_attempt_at: datetime | None
    compensated_at: datetime | None
    has_compensation: bool = False
    timing: StepTiming = Field(default_factory=StepTiming)


class TimelineEntry(BaseModel):
    timestamp: datetime
    event: str
    step_name: str | None
    details: dict[str, Any]
    actor: str


class GetWorkflowStatusResponse(BaseModel):
    workflow: WorkflowDetail
    steps: list[StepView]
    execution_timeline: list[TimelineEntry]


class BatchItem(BaseModel):
    workflow_id: UUID
    correlation_id: str
    ok: bool
    status: str | None = None
    error: str | None = None


class BatchResult(BaseModel):
    """A batch's preview (dry run: what matched) or its results, one per workflow.

    Confirm a preview by sending its ``workflow_ids`` back: the batch then acts on
    exactly those, never on what the filter happens to match by then."""

    action: str
    matched: int
    dry_run: bool
    results: list[BatchItem] = Field(default_factory=list)
    preview: list[WorkflowSummary] = Field(default_factory=list)
    workflow_ids: list[UUID] = Field(default_factory=list)

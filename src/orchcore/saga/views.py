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


class ErrorDetails(BaseModel):
    step_name: str | None
    error_message: str | None
    retry_count: int = 0
    phase: str | None = None


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
    next_attempt_at: datetime | None
    error_message: str | None
    idempotency_key: str | None
    compensation_status: str | None
    compensation_attempts: int
    compensation_error: str | None
    compensation_next_attempt_at: datetime | None
    compensated_at: datetime | None
    has_compensation: bool = False


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
    action: str
    matched: int
    dry_run: bool
    results: list[BatchItem] = Field(default_factory=list)
    preview: list[WorkflowSummary] = Field(default_factory=list)

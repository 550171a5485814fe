"""Workflow routes (the seed's shapes), operator actions, batches and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, Field

from orchcore.alerts import Alert
from orchcore.api.auth import Caller, Engine, allowed
from orchcore.auth import Action
from orchcore.saga.models import (
    CompensateWorkflowRequest,
    RegisteredDefinition,
    RetryWorkflowRequest,
    StartWorkflowRequest,
    StartWorkflowResponse,
    WorkflowDefinition,
)
from orchcore.saga.views import (
    BatchResult,
    GetWorkflowsResponse,
    GetWorkflowStatusResponse,
    WorkflowDetail,
)

router = APIRouter(prefix="/api/orchestration", tags=["workflows"])
#: An action on a workflow a daemon drives waits for the call in flight: the answer is
#: 202 with the action in pending_actions and what it waits for in in_flight.
QUEUED: dict[int | str, dict[str, Any]] = {
    status.HTTP_202_ACCEPTED: {
        "model": WorkflowDetail,
        "description": "queued behind a call in flight; applies at the daemon's next commit",
    }
}


def answered(detail: WorkflowDetail, response: Response) -> WorkflowDetail:
    if detail.pending_actions:
        response.status_code = status.HTTP_202_ACCEPTED
    return detail


READ = [allowed(Action.READ)]
WRITE = [allowed(Action.WRITE)]


class Reason(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class SkipStepRequest(BaseModel):
    output: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=500)


class MarkCompensatedRequest(BaseModel):
    step_name: str | None = None
    note: str = Field(min_length=1, max_length=1000)


class BatchRequest(BaseModel):
    status: list[str] | None = None
    workflow_name: str | None = None
    wedding_id: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    reason: str | None = Field(default=None, max_length=500)
    dry_run: bool = True
    workflow_ids: list[UUID] | None = Field(
        default=None,
        max_length=5000,
        description="with dry_run false: the workflow_ids the preview returned; the batch "
        "acts on exactly those that still match the filter",
    )
    limit: int = Field(default=500, ge=1, le=5000)


@router.post(
    "/workflows/definitions",
    response_model=RegisteredDefinition,
    status_code=status.HTTP_201_CREATED,
    dependencies=WRITE,
)
async def register_definition(
    definition: WorkflowDefinition, orch: Engine, caller: Caller
) -> RegisteredDefinition:
    return await orch.workflow_definitions.register(definition, actor=caller.actor)


@router.get("/workflows/definitions", dependencies=READ)
async def list_definitions(orch: Engine) -> dict[str, Any]:
    return {"definitions": await orch.workflow_definitions.list_definitions()}


@router.get("/workflows/definitions/{name}", response_model=RegisteredDefinition, dependencies=READ)
async def get_definition(
    name: str, orch: Engine, version: str | None = None
) -> RegisteredDefinition:
    return await orch.workflow_definitions.get(name, version)


@router.get("/workflows", response_model=GetWorkflowsResponse, dependencies=READ)
async def list_workflows(
    orch: Engine,
    status_: Annotated[
        list[str] | None, Query(alias="status", description="repeat or comma-separate")
    ] = None,
    name: str | None = None,
    wedding_id: str | None = None,
    correlation_id: str | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> GetWorkflowsResponse:
    statuses = [s for value in status_ or [] for s in value.split(",") if s] or None
    return await orch.workflows.list_workflows(
        status=statuses,
        name=name,
        wedding_id=wedding_id,
        correlation_id=correlation_id,
        started_after=started_after,
        started_before=started_before,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/workflows",
    response_model=StartWorkflowResponse,
    status_code=status.HTTP_201_CREATED,
    dependencies=[allowed(Action.START_WORKFLOW)],
)
async def start_workflow(
    request: StartWorkflowRequest,
    orch: Engine,
    caller: Caller,
    response: Response,
    traceparent: Annotated[str | None, Header()] = None,
) -> StartWorkflowResponse:
    # The initiator is the workflow's calling service: a service token's own service.
    named = request.initiating_service if "initiating_service" in request.model_fields_set else None
    initiator = caller.acting_as(named, default=request.initiating_service)
    if initiator != request.initiating_service:
        request = request.model_copy(update={"initiating_service": initiator})
    # A request that arrives in a trace starts a workflow inside it (W3C trace context).
    started = await orch.workflows.start(request, actor=caller.actor, traceparent=traceparent)
    if not started.created:
        response.status_code = status.HTTP_200_OK  # the existing workflow of that correlation
    return started


@router.post("/workflows/batch/{action}", response_model=BatchResult, dependencies=WRITE)
async def batch(
    action: Literal["retry", "compensate", "cancel"],
    request: BatchRequest,
    orch: Engine,
    caller: Caller,
) -> BatchResult:
    return await orch.workflows.batch(
        action,
        actor=caller.actor,
        reason=request.reason,
        dry_run=request.dry_run,
        status=request.status,
        name=request.workflow_name,
        wedding_id=request.wedding_id,
        started_after=request.started_after,
        started_before=request.started_before,
        workflow_ids=request.workflow_ids,
        limit=request.limit,
    )


@router.get(
    "/workflows/{workflow_id}/status", response_model=GetWorkflowStatusResponse, dependencies=READ
)
async def workflow_status(workflow_id: str, orch: Engine) -> GetWorkflowStatusResponse:
    return await orch.workflows.status(await orch.workflows.find(workflow_id))


@router.post(
    "/workflows/{workflow_id}/retry",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def retry(
    workflow_id: str,
    request: RetryWorkflowRequest,
    orch: Engine,
    caller: Caller,
    response: Response,
) -> WorkflowDetail:
    detail = await orch.workflows.retry(
        await orch.workflows.find(workflow_id), request, actor=caller.actor
    )
    return answered(detail, response)


@router.post(
    "/workflows/{workflow_id}/compensate",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def compensate(
    workflow_id: str,
    request: CompensateWorkflowRequest,
    orch: Engine,
    caller: Caller,
    response: Response,
) -> WorkflowDetail:
    detail = await orch.workflows.compensate(
        await orch.workflows.find(workflow_id), request, actor=caller.actor
    )
    return answered(detail, response)


@router.post(
    "/workflows/{workflow_id}/{verb}",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def lifecycle(
    workflow_id: str,
    verb: Literal["pause", "resume", "cancel"],
    orch: Engine,
    caller: Caller,
    response: Response,
    request: Reason | None = None,
) -> WorkflowDetail:
    action = getattr(orch.workflows, verb)
    detail: WorkflowDetail = await action(
        await orch.workflows.find(workflow_id),
        actor=caller.actor,
        reason=request.reason if request else None,
    )
    return answered(detail, response)


@router.post(
    "/workflows/{workflow_id}/steps/{step_name}/skip",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def skip_step(
    workflow_id: str,
    step_name: str,
    request: SkipStepRequest,
    orch: Engine,
    caller: Caller,
    response: Response,
) -> WorkflowDetail:
    detail = await orch.workflows.skip_step(
        await orch.workflows.find(workflow_id),
        step_name,
        output=request.output,
        actor=caller.actor,
        reason=request.reason,
    )
    return answered(detail, response)


@router.post(
    "/workflows/{workflow_id}/compensation/retry",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def retry_compensation(
    workflow_id: str,
    orch: Engine,
    caller: Caller,
    response: Response,
    request: Reason | None = None,
) -> WorkflowDetail:
    detail = await orch.workflows.retry_compensation(
        await orch.workflows.find(workflow_id),
        actor=caller.actor,
        reason=request.reason if request else None,
    )
    return answered(detail, response)


@router.post(
    "/workflows/{workflow_id}/compensation/mark-done",
    response_model=WorkflowDetail,
    responses=QUEUED,
    dependencies=WRITE,
)
async def mark_compensated(
    workflow_id: str,
    request: MarkCompensatedRequest,
    orch: Engine,
    caller: Caller,
    response: Response,
) -> WorkflowDetail:
    detail = await orch.workflows.mark_compensated(
        await orch.workflows.find(workflow_id),
        request.step_name,
        actor=caller.actor,
        note=request.note,
    )
    return answered(detail, response)


@router.get("/alerts", response_model=list[Alert], dependencies=READ)
async def list_alerts(orch: Engine, include_resolved: bool = False) -> list[Alert]:
    return await orch.alerts.list_alerts(open_only=not include_resolved)


@router.post("/alerts/{alert_id}/{verb}", response_model=Alert, dependencies=WRITE)
async def change_alert(
    alert_id: UUID, verb: Literal["acknowledge", "resolve"], orch: Engine, caller: Caller
) -> Alert:
    action = getattr(orch.alerts, verb)
    alert: Alert = await action(alert_id, actor=caller.actor)
    return alert

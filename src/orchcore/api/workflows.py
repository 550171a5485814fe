"""Workflow routes (the seed's shapes), operator actions, batches and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from orchcore.alerts import Alert
from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute, Timestamp
from orchcore.auth import Action
from orchcore.saga.models import (
    CompensateWorkflowRequest,
    RegisteredDefinition,
    RetryWorkflowRequest,
    StartWorkflowRequest,
    StartWorkflowResponse,
    WorkflowDefinition,
)
from orchcore.saga.status import WorkflowStatus
from orchcore.saga.views import (
    BatchResult,
    GetWorkflowsResponse,
    GetWorkflowStatusResponse,
    WorkflowDetail,
)
from orchcore.textrules import NOT_BLANK_PATTERN

router = APIRouter(prefix="/api/orchestration", tags=["workflows"], route_class=ContractRoute)

#: A status filter's value: statuses, comma-separated (empty items are skipped).
_ONE_STATUS = "|".join(WorkflowStatus)
STATUS_FILTER_PATTERN = f"^({_ONE_STATUS})?(,({_ONE_STATUS})?)*$"
#: Ample for a cursor (about 64 characters); a longer text is no cursor.
CURSOR_MAX_LENGTH = 200
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
    note: str = Field(
        min_length=1, max_length=1000, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )


def _one_filter_given(given: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"required": [given], "properties": {given: value}}


class BatchRequest(BaseModel):
    # The engine acts only on what a filter matches: one of these must say something.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                _one_filter_given("status", {"type": "array", "minItems": 1}),
                _one_filter_given("workflow_name", {"type": "string", "minLength": 1}),
                _one_filter_given("wedding_id", {"type": "string"}),
                _one_filter_given("started_after", {"type": "string"}),
                _one_filter_given("started_before", {"type": "string"}),
            ]
        }
    )

    status: list[WorkflowStatus] | None = None
    workflow_name: str | None = None
    wedding_id: UUID | None = None
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
        # The pattern documents what the engine checks (and names in its refusal).
        list[Annotated[str, Field(json_schema_extra={"pattern": STATUS_FILTER_PATTERN})]] | None,
        Query(alias="status", description="repeat or comma-separate"),
    ] = None,
    name: str | None = None,
    wedding_id: UUID | None = None,
    correlation_id: str | None = None,
    started_after: Timestamp | None = None,
    started_before: Timestamp | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    # Bounded (the database's OFFSET is a bigint); next_cursor reads on past any page.
    offset: int = Query(default=0, ge=0, le=10_000_000),
    # Opaque: the shape is the engine's (orchcore.saga.reads.cursor_of), so the schema
    # bounds only its length and the engine refuses one it cannot read (422, "after").
    after: str | None = Query(
        default=None,
        max_length=CURSOR_MAX_LENGTH,
        description="the next_cursor of the page before: the page after it, read by the "
        "index however deep (a page read with it stays where it was while workflows are "
        "started); not with offset. Empty: the first page",
    ),
) -> GetWorkflowsResponse:
    statuses = [s for value in status_ or [] for s in value.split(",") if s] or None
    return await orch.workflows.list_workflows(
        status=statuses,
        name=name,
        wedding_id=str(wedding_id) if wedding_id else None,
        correlation_id=correlation_id,
        started_after=started_after,
        started_before=started_before,
        limit=limit,
        offset=offset,
        after=after or None,
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
        status=[str(s) for s in request.status] if request.status is not None else None,
        name=request.workflow_name,
        wedding_id=str(request.wedding_id) if request.wedding_id else None,
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


def _lifecycle(verb: Literal["pause", "resume", "cancel"]) -> Any:
    async def lifecycle(
        workflow_id: str,
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

    lifecycle.__doc__ = f"{verb.capitalize()} the workflow."
    return lifecycle


# One route a verb, not one route with the verb as a parameter: a path like
# /workflows/{id}/status then answers 405 to POST, not 422 for an unknown verb.
for _verb in ("pause", "resume", "cancel"):
    router.add_api_route(
        f"/workflows/{{workflow_id}}/{_verb}",
        _lifecycle(_verb),
        methods=["POST"],
        name=f"{_verb}_workflow",
        response_model=WorkflowDetail,
        responses=QUEUED,
        dependencies=WRITE,
    )


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


def _alert_change(verb: Literal["acknowledge", "resolve"]) -> Any:
    async def change_alert(alert_id: UUID, orch: Engine, caller: Caller) -> Alert:
        action = getattr(orch.alerts, verb)
        alert: Alert = await action(alert_id, actor=caller.actor)
        return alert

    change_alert.__doc__ = f"{verb.capitalize()} the alert."
    return change_alert


for _change in ("acknowledge", "resolve"):
    router.add_api_route(
        f"/alerts/{{alert_id}}/{_change}",
        _alert_change(_change),
        methods=["POST"],
        name=f"{_change}_alert",
        response_model=Alert,
        dependencies=WRITE,
    )

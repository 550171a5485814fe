"""Starting a workflow: one statement writes it, its steps and its first event.

When the process starting it runs a saga runner with room, the runner drives it at
once under a lease taken in the same statement: no claim round trip on the hot path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol
from uuid import UUID

from orchcore.callpath.tracecontext import TraceContext
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import ConflictError, ValidationFailed
from orchcore.saga import forward, planner
from orchcore.saga.definitions import DefinitionStore
from orchcore.saga.models import StartWorkflowRequest, StartWorkflowResponse, WorkflowDefinition
from orchcore.saga.state import Command, Event, StepState, WorkflowState, step_definitions
from orchcore.saga.status import WorkflowEvent, WorkflowStatus
from orchcore.validation import parse

Q = Queries("orchcore.saga")

_ESTIMATE_TTL_SECONDS = 60.0


class InlineDriver(Protocol):
    """A runner in this process that can drive what is started here (SagaRunner)."""

    owner: str
    actor: str
    lease_seconds: float

    def has_room(self) -> bool: ...

    def adopt(
        self,
        state: WorkflowState,
        commands: list[Command] | None = None,
        *,
        started: StepState | None = None,
    ) -> None: ...


#: Whether a name may start workflows: a registered service or one of orch's own. The
#: initiator is the source of every call the workflow makes, so it must be a name the
#: call path accepts (and one that cannot grow its state without bound).
KnownSource = Callable[[str], Awaitable[bool]]
#: Whether a new trace is recorded (sampled), decided at its root: given the initiator
#: and the service its first call goes to (the mesh's observability policy between them).
RootSampler = Callable[[str, str | None], Awaitable[bool]]


class WorkflowStarter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        definitions: DefinitionStore,
        known_source: KnownSource | None = None,
        sampler: RootSampler | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._definitions = definitions
        self._known_source = known_source
        self._sampler = sampler
        self.runner: InlineDriver | None = None
        self._estimates: dict[str, tuple[float, float]] = {}

    async def _sample(self, req: StartWorkflowRequest, definition: WorkflowDefinition) -> bool:
        if self._sampler is None:
            return True
        return await self._sampler(req.initiating_service, _first_service(definition))

    async def start(
        self,
        request: StartWorkflowRequest | dict[str, Any],
        *,
        actor: str,
        traceparent: str | None = None,
    ) -> StartWorkflowResponse:
        """Start a workflow; with ``traceparent`` (the starting request's) its trace is a
        child of that span and follows its sampling decision."""
        req = parse(StartWorkflowRequest, request)
        parent = TraceContext.parse(traceparent)
        if self._known_source is not None and not await self._known_source(req.initiating_service):
            raise ValidationFailed(
                "initiating_service",
                f"{req.initiating_service!r} is not a registered service (register it, or "
                "leave initiating_service out to start the workflow as orch)",
            )
        registered = await self._definitions.get(req.workflow_name, req.workflow_version)
        definition = registered.definition
        now = self._clock.now()
        workflow_id = uuid.uuid4()
        runner = self.runner if self.runner is not None and self.runner.has_room() else None
        state = WorkflowState.fresh(
            workflow_id=workflow_id,
            definition=definition,
            correlation_id=req.correlation_id or f"wf-{workflow_id.hex[:16]}",
            wedding_id=req.wedding_id,
            initiating_service=req.initiating_service,
            context=dict(req.context_data),
            status=WorkflowStatus.RUNNING if runner else WorkflowStatus.PENDING,
            started_at=now,
            timeout_at=now + timedelta(minutes=req.timeout_minutes or definition.timeout_minutes),
            lease_owner=runner.owner if runner else None,
            lease_until=now + timedelta(seconds=runner.lease_seconds) if runner else None,
            trace_id=parent.trace_id if parent else TraceContext.new().trace_id,
            trace_parent_span_id=parent.span_id if parent else None,
            trace_sampled=parent.sampled if parent else await self._sample(req, definition),
        )
        events = [_started_event(state, req, actor)]
        started = _start_first_call(state, runner) if runner is not None else None
        changes = state.take_changes()  # written by the start itself
        inserted = await self._db.fetchval(
            Q.start_workflow,
            _workflow_row(state, definition_id=registered.id),
            _step_rows(state),
            [e.as_record() for e in events + changes.events],
        )
        if inserted is None:
            return await self._existing(state.correlation_id, await self._estimate(definition))
        if runner is not None:
            runner.adopt(state, started=started)
        return StartWorkflowResponse(
            workflow_id=workflow_id,
            correlation_id=state.correlation_id,
            status=state.status,
            estimated_duration_minutes=await self._estimate(definition),
        )

    async def _existing(self, correlation_id: str, estimate: float) -> StartWorkflowResponse:
        """A start with a correlation id already taken answers with that workflow."""
        existing = await self._db.fetchrow(Q.workflow_by_correlation, correlation_id)
        if existing is None:  # deleted meanwhile; extremely unlikely
            raise ConflictError(f"correlation id {correlation_id!r} is taken")
        return StartWorkflowResponse(
            workflow_id=existing["id"],
            correlation_id=correlation_id,
            status=existing["current_status"],
            estimated_duration_minutes=estimate,
            created=False,
        )

    async def _estimate(self, definition: WorkflowDefinition) -> float:
        """Median duration of recent completed runs (cached); else the step timeouts."""
        cached = self._estimates.get(definition.name)
        if cached is not None and time.monotonic() - cached[0] < _ESTIMATE_TTL_SECONDS:
            return cached[1]
        seconds = await self._db.fetchval(Q.median_duration, definition.name)
        if seconds is None:
            seconds = sum(s.timeout_seconds for s in definition.steps)
        minutes = round(float(seconds) / 60, 3)
        self._estimates[definition.name] = (time.monotonic(), minutes)
        return minutes


def _start_first_call(state: WorkflowState, runner: InlineDriver) -> StepState | None:
    """The first step's attempt, marked as started in the statement that starts the
    workflow: its call goes out without a commit of its own, and a crash during it still
    leaves the step known to have been under way (so compensation includes it)."""
    action = planner.plan(state, state.started_at)
    if not isinstance(action, planner.RunStep):
        return None
    forward.start_attempt(state, action.step, state.started_at, runner.actor)
    return action.step


def _started_event(state: WorkflowState, req: StartWorkflowRequest, actor: str) -> Event:
    return Event(
        None,
        WorkflowEvent.STARTED,
        {
            "correlation_id": state.correlation_id,
            "initiating_service": req.initiating_service,
            "version": state.version,
            "wedding_id": str(req.wedding_id) if req.wedding_id else None,
        },
        actor,
        state.started_at,
    )


def _first_service(definition: WorkflowDefinition) -> str | None:
    for step in definition.steps:
        service = getattr(step, "service_name", None)
        if service:
            return str(service)
    return None


def _workflow_row(state: WorkflowState, *, definition_id: UUID) -> dict[str, Any]:
    definition = state.definition
    return {
        "id": str(state.id),
        "workflow_name": definition.name,
        "workflow_version": definition.version,
        "workflow_definition": definition.model_dump(mode="json"),
        "definition_id": str(definition_id),
        "correlation_id": state.correlation_id,
        "wedding_id": str(state.wedding_id) if state.wedding_id else None,
        "initiating_service": state.initiating_service,
        "current_status": state.status,
        "total_steps": len(definition.steps),
        "context_data": state.context,
        "started_at": state.started_at.isoformat(),
        "timeout_at": state.timeout_at.isoformat(),
        "lease_owner": state.lease_owner,
        "lease_until": state.lease_until.isoformat() if state.lease_until else None,
        "trace_id": state.trace_id,
        "trace_parent_span_id": state.trace_parent_span_id,
        "trace_sampled": state.trace_sampled,
    }


def _step_rows(state: WorkflowState) -> list[dict[str, Any]]:
    rows = []
    for name, (step, parent, branch, order) in step_definitions(state.definition).items():
        action = getattr(step, "compensation_action", None)
        now = state.steps[name].as_record()
        rows.append(
            {
                "step_name": name,
                "step_type": step.type,
                "step_order": order,
                "service_name": step.service_name,
                "service_endpoint": step.endpoint,
                "status": now["status"],
                "started_at": now["started_at"],
                "idempotency_key": now["idempotency_key"],
                "attempt_deadline": now["attempt_deadline"],
                "max_retries": step.retry_policy.max_retries,
                "timeout_seconds": int(step.timeout_seconds),
                "compensation_action": action.model_dump(mode="json") if action else None,
                "parent_step": parent,
                "branch_name": branch,
                "step_definition": step.model_dump(mode="json"),
            }
        )
    return rows

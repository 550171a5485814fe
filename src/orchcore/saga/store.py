"""WorkflowStore: starting workflows, reading them, and every operator action on them.

Operator actions commit at once and bump the workflow's revision. When a daemon holds
the workflow (it is mid-step) its next commit sees the new revision and merges: the
operator's status wins, the step outcome the daemon brings is kept.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg

from orchcore.audit import record_action
from orchcore.callpath.tracecontext import TraceContext
from orchcore.clock import Clock
from orchcore.db import Connection, Database, Queries
from orchcore.errors import ConflictError, NotFoundError, ValidationFailed
from orchcore.saga.definitions import DefinitionStore
from orchcore.saga.models import (
    TERMINAL_STATUSES,
    CompensateWorkflowRequest,
    RetryWorkflowRequest,
    StartWorkflowRequest,
    StartWorkflowResponse,
    WorkflowDefinition,
)
from orchcore.saga.paths import PathError, apply_output
from orchcore.saga.runner import SagaRunner
from orchcore.saga.state import Event, WorkflowState, step_definitions
from orchcore.saga.views import (
    BatchItem,
    BatchResult,
    ErrorDetails,
    GetWorkflowsResponse,
    GetWorkflowStatusResponse,
    StepView,
    TimelineEntry,
    WorkflowDetail,
    WorkflowSummary,
)
from orchcore.validation import parse

Q = Queries("orchcore.saga")

ALL_STATUSES = (
    "pending", "running", "retrying", "paused", "compensating", "compensated", "completed",
    "failed", "compensation_failed", "cancelled",
)  # fmt: skip
BatchAction = Literal["retry", "compensate", "cancel"]
_ESTIMATE_TTL_SECONDS = 60.0


class WorkflowStore:
    def __init__(self, db: Database, clock: Clock, definitions: DefinitionStore) -> None:
        self._db = db
        self._clock = clock
        self.definitions = definitions
        self.runner: SagaRunner | None = None
        self._estimates: dict[str, tuple[float, float]] = {}

    def attach_runner(self, runner: SagaRunner | None) -> None:
        """Workflows started here are then driven here at once (no claim round trip)."""
        self.runner = runner

    # -- starting ---------------------------------------------------------------------------

    async def start(
        self, request: StartWorkflowRequest | dict[str, Any], *, actor: str
    ) -> StartWorkflowResponse:
        req = parse(StartWorkflowRequest, request)
        registered = await self.definitions.get(req.workflow_name, req.workflow_version)
        definition = registered.definition
        now = self._clock.now()
        workflow_id = uuid.uuid4()
        correlation_id = req.correlation_id or f"wf-{workflow_id.hex[:16]}"
        timeout_at = now + timedelta(minutes=req.timeout_minutes or definition.timeout_minutes)
        runner = self.runner
        inline = runner is not None and runner.in_flight < runner.max_in_flight
        lease_owner = runner.owner if inline and runner else None
        lease_until = now + timedelta(seconds=runner.lease_seconds) if inline and runner else None
        status = "running" if inline else "pending"
        trace_id = TraceContext.new().trace_id
        started = Event(
            None,
            "workflow_started",
            {
                "correlation_id": correlation_id,
                "initiating_service": req.initiating_service,
                "version": definition.version,
                "wedding_id": str(req.wedding_id) if req.wedding_id else None,
            },
            actor,
            now,
        )
        inserted = await self._db.fetchval(
            Q.start_workflow,
            workflow_id,
            definition.name,
            definition.version,
            definition.model_dump(mode="json"),
            registered.id,
            correlation_id,
            req.wedding_id,
            req.initiating_service,
            status,
            len(definition.steps),
            req.context_data,
            now,
            timeout_at,
            lease_owner,
            lease_until,
            trace_id,
            _step_rows(definition),
            [started.as_record()],
        )
        if inserted is None:
            existing = await self._db.fetchrow(Q.workflow_by_correlation, correlation_id)
            if existing is None:  # deleted meanwhile; extremely unlikely
                raise ConflictError(f"correlation id {correlation_id!r} is taken")
            return StartWorkflowResponse(
                workflow_id=existing["id"],
                correlation_id=correlation_id,
                status=existing["current_status"],
                estimated_duration_minutes=await self._estimate(definition),
                created=False,
            )
        if inline and runner is not None:
            runner.adopt(
                self._fresh_state(
                    workflow_id,
                    definition,
                    correlation_id,
                    req,
                    status,
                    now,
                    timeout_at,
                    lease_owner,
                    lease_until,
                    trace_id,
                )
            )
        return StartWorkflowResponse(
            workflow_id=workflow_id,
            correlation_id=correlation_id,
            status=status,
            estimated_duration_minutes=await self._estimate(definition),
        )

    def _fresh_state(
        self,
        workflow_id: UUID,
        definition: WorkflowDefinition,
        correlation_id: str,
        req: StartWorkflowRequest,
        status: str,
        now: datetime,
        timeout_at: datetime,
        lease_owner: str | None,
        lease_until: datetime | None,
        trace_id: str,
    ) -> WorkflowState:
        from orchcore.saga.state import StepState

        state = WorkflowState(
            id=workflow_id,
            name=definition.name,
            version=definition.version,
            definition=definition,
            correlation_id=correlation_id,
            wedding_id=req.wedding_id,
            initiating_service=req.initiating_service,
            status=status,
            phase="forward",
            current_step=0,
            context=dict(req.context_data),
            compensation_stack=[],
            error_details=None,
            started_at=now,
            completed_at=None,
            timeout_at=timeout_at,
            next_run_at=now,
            lease_owner=lease_owner,
            lease_until=lease_until,
            paused_from=None,
            compensation_request=None,
            trace_id=trace_id,
            revision=0,
        )
        for name, (step, parent, branch, order) in step_definitions(definition).items():
            state.steps[name] = StepState(
                name=name,
                type=step.type,
                order=order,
                parent=parent,
                branch=branch,
                definition=step,
            )
        return state

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

    # -- reading ------------------------------------------------------------------------------

    async def status(self, workflow_id: UUID | str) -> GetWorkflowStatusResponse:
        """The seed's GetWorkflowStatusResponse, with the execution timeline."""
        key = _uuid(workflow_id)
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            row = await conn.fetchrow(Q.workflow_row, key)
            if row is None:
                raise NotFoundError("workflow", str(workflow_id))
            steps = await conn.fetch(Q.steps_of, key)
            events = await conn.fetch(Q.timeline_of, key)
        return GetWorkflowStatusResponse(
            workflow=_detail(row),
            steps=[_step_view(s) for s in _in_definition_order(steps)],
            execution_timeline=[
                TimelineEntry(
                    timestamp=e["occurred_at"],
                    event=e["event"],
                    step_name=e["step_name"],
                    details=e["details"],
                    actor=e["actor"],
                )
                for e in events
            ],
        )

    async def find(self, key: str) -> UUID:
        """A workflow by id or correlation id."""
        try:
            candidate = UUID(key)
        except ValueError:
            candidate = None
        if candidate is not None and await self._db.fetchval(
            "SELECT 1 FROM distributed_workflows WHERE id = $1", candidate
        ):
            return candidate
        row = await self._db.fetchrow(Q.workflow_by_correlation, key)
        if row is None:
            raise NotFoundError("workflow", key)
        found: UUID = row["id"]
        return found

    async def list_workflows(
        self,
        *,
        status: list[str] | None = None,
        name: str | None = None,
        wedding_id: UUID | str | None = None,
        correlation_id: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> GetWorkflowsResponse:
        """The seed's GetWorkflowsResponse, filtered; status_summary covers every status."""
        for value in status or []:
            if value not in ALL_STATUSES:
                raise ValidationFailed(
                    "status", f"{value!r} is not one of {', '.join(ALL_STATUSES)}"
                )
        wedding = _uuid(wedding_id, field="wedding_id") if wedding_id else None
        args = (status or None, name, wedding, correlation_id, started_after, started_before)
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            rows = await conn.fetch(Q.list_workflows, *args, limit, offset)
            total = await conn.fetchval(Q.count_workflows, *args)
            summary_rows = await conn.fetch(Q.status_summary)
        summary = {s: 0 for s in ALL_STATUSES}
        summary |= {r["current_status"]: r["n"] for r in summary_rows}
        return GetWorkflowsResponse(
            workflows=[_summary(r, self._clock.now()) for r in rows],
            status_summary=summary,
            total=total,
        )

    async def status_counts(self) -> dict[str, int]:
        summary = {s: 0 for s in ALL_STATUSES}
        summary |= {r["current_status"]: r["n"] for r in await self._db.fetch(Q.status_summary)}
        return summary

    # -- operator actions ------------------------------------------------------------------------

    async def pause(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"pending", "running", "retrying", "compensating"}, "pause")
            return {"current_status": "paused", "paused_from": row["current_status"]}

        return await self._operate(workflow_id, "paused", actor, reason, change)

    async def resume(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"paused"}, "resume")
            back = row["paused_from"] or "running"
            return {"current_status": back, "paused_from": None, "next_run_at": now}

        return await self._operate(workflow_id, "resumed", actor, reason, change)

    async def cancel(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        """Stop the workflow where it is, without compensating (compensate undoes)."""

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            if row["current_status"] in TERMINAL_STATUSES:
                raise ConflictError(f"workflow is {row['current_status']}; nothing to cancel")
            await self._set_steps(
                conn, row["id"], now, {"pending", "retrying", "waiting"}, status="cancelled"
            )
            return {
                "current_status": "cancelled",
                "completed_at": now,
                "next_run_at": None,
                "paused_from": None,
            }

        return await self._operate(workflow_id, "cancelled", actor, reason, change)

    async def compensate(
        self,
        workflow_id: UUID | str,
        request: CompensateWorkflowRequest | dict[str, Any],
        *,
        actor: str,
    ) -> WorkflowDetail:
        """Undo the completed steps (all, the definition's partial set, or named ones)."""
        req = parse(CompensateWorkflowRequest, request)

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(
                row,
                {"pending", "running", "retrying", "paused", "failed", "completed", "cancelled"},
                "compensate",
            )
            definition = WorkflowDefinition.model_validate(row["workflow_definition"])
            names = set(step_definitions(definition))
            unknown = sorted(set(req.custom_steps or []) - names)
            if unknown:
                raise ValidationFailed("custom_steps", f"no step {unknown[0]!r}")
            strategy = req.compensation_strategy
            if strategy == "partial" and not definition.compensate_steps:
                raise ValidationFailed(
                    "compensation_strategy",
                    "the definition names no steps for partial compensation",
                )
            await self._set_steps(
                conn, row["id"], now, {"pending", "retrying", "waiting"}, status="cancelled"
            )
            return {
                "current_status": "compensating",
                "phase": "compensate",
                "paused_from": None,
                "completed_at": None,
                "next_run_at": now,
                "compensation_request": {
                    "strategy": strategy,
                    "custom_steps": req.custom_steps,
                    "reason": req.reason,
                    "requested_by": actor,
                },
            }

        return await self._operate(
            workflow_id,
            "compensation_requested",
            actor,
            req.reason,
            change,
            details={"strategy": req.compensation_strategy, "custom_steps": req.custom_steps},
        )

    async def retry(
        self,
        workflow_id: UUID | str,
        request: RetryWorkflowRequest | dict[str, Any] | None = None,
        *,
        actor: str,
    ) -> WorkflowDetail:
        """Run again: the current step, every failed step, or everything from step N."""
        req = parse(RetryWorkflowRequest, request or {})

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"failed", "retrying", "cancelled"}, "retry")
            steps = await conn.fetch(Q.steps_of, row["id"])
            chosen = _steps_to_retry(req, steps)
            if not chosen:
                raise ConflictError("no step to retry: nothing failed or is waiting to retry")
            for step in chosen:
                budget = step["retry_count"] if req.max_retries is None else 0
                await conn.execute(
                    Q.operator_update_step,
                    row["id"],
                    step["step_name"],
                    "pending",
                    budget,
                    None if req.retry_strategy == "from_step" else step["output_data"],
                    None,
                    None,
                    None,
                    0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    now,
                )
            done = {"completed", "skipped"}
            order_of_first = (
                min(s["step_order"] for s in chosen if s["parent_step"] is None)
                if any(s["parent_step"] is None for s in chosen)
                else None
            )
            current = sum(
                1
                for s in steps
                if s["parent_step"] is None
                and s["status"] in done
                and (order_of_first is None or s["step_order"] < order_of_first)
            )
            return {
                "current_status": "running",
                "phase": "forward",
                "completed_at": None,
                "next_run_at": now,
                "error_details": None,
                "current_step": current,
                "paused_from": None,
                "compensation_request": None,
            }

        return await self._operate(
            workflow_id,
            "retry_requested",
            actor,
            req.reason,
            change,
            details={"strategy": req.retry_strategy, "from_step": req.from_step},
        )

    async def skip_step(
        self,
        workflow_id: UUID | str,
        step_name: str,
        *,
        output: dict[str, Any] | None,
        actor: str,
        reason: str,
    ) -> WorkflowDetail:
        """Treat a failed step as done with a supplied output, and carry on."""

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"failed", "retrying", "paused"}, "skip a step of")
            steps = {s["step_name"]: s for s in await conn.fetch(Q.steps_of, row["id"])}
            step = steps.get(step_name)
            if step is None:
                raise NotFoundError("step", step_name)
            if step["status"] not in ("failed", "retrying", "pending"):
                raise ConflictError(
                    f"step {step_name} is {step['status']}; only a failed or "
                    "waiting step can be skipped"
                )
            definition = WorkflowDefinition.model_validate(row["workflow_definition"])
            step_def = step_definitions(definition)[step_name][0]
            context = dict(row["context_data"] or {})
            try:
                apply_output(step_def.output_mapping, output or {}, context)
            except PathError as exc:
                raise ValidationFailed(
                    "output", f"does not fit the step's output_mapping: {exc}"
                ) from None
            seq = max((s["completion_seq"] or 0 for s in steps.values()), default=0) + 1
            await conn.execute(
                Q.operator_update_step,
                row["id"],
                step_name,
                "skipped",
                step["retry_count"],
                output or {},
                None,
                None,
                None,
                0,
                None,
                None,
                None,
                now,
                seq,
                now,
            )
            done = sum(
                1
                for s in steps.values()
                if s["parent_step"] is None
                and (s["status"] in ("completed", "skipped") or s["step_name"] == step_name)
            )
            return {
                "current_status": "running",
                "phase": "forward",
                "next_run_at": now,
                "context_data": context,
                "current_step": done,
                "error_details": None,
                "completed_at": None,
                "paused_from": None,
            }

        return await self._operate(
            workflow_id,
            "step_skipped",
            actor,
            reason,
            change,
            step_name=step_name,
            details={"output": output},
        )

    async def retry_compensation(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        """Try the failed compensation again (its retry budget starts afresh)."""

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"compensation_failed"}, "retry the compensation of")
            await self._reset_failed_compensations(conn, row["id"], now, manual=False)
            return {
                "current_status": "compensating",
                "phase": "compensate",
                "next_run_at": now,
                "completed_at": None,
            }

        return await self._operate(
            workflow_id, "compensation_retry_requested", actor, reason, change
        )

    async def mark_compensated(
        self, workflow_id: UUID | str, step_name: str | None = None, *, actor: str, note: str
    ) -> WorkflowDetail:
        """Record that a person undid the step by hand; remaining compensations go on."""
        if not note.strip():
            raise ValidationFailed("note", "say what was done by hand")

        async def change(conn: Connection, row: asyncpg.Record, now: datetime) -> dict[str, Any]:
            _require(row, {"compensation_failed"}, "mark compensated")
            steps = await conn.fetch(Q.steps_of, row["id"])
            failed = [
                s
                for s in steps
                if s["compensation_status"] == "failed"
                and (step_name is None or s["step_name"] == step_name)
            ]
            if not failed:
                raise NotFoundError("failed compensation", step_name or "(any step)")
            for step in failed:
                await conn.execute(
                    Q.operator_update_step,
                    row["id"],
                    step["step_name"],
                    "compensated",
                    step["retry_count"],
                    step["output_data"],
                    step["error_message"],
                    None,
                    "manual",
                    step["compensation_attempts"],
                    step["compensation_error"],
                    None,
                    now,
                    step["completed_at"],
                    step["completion_seq"],
                    now,
                )
            return {
                "current_status": "compensating",
                "phase": "compensate",
                "next_run_at": now,
                "completed_at": None,
            }

        return await self._operate(
            workflow_id, "compensation_marked_done", actor, note, change, step_name=step_name
        )

    async def batch(
        self,
        action: BatchAction,
        *,
        actor: str,
        reason: str | None = None,
        dry_run: bool = False,
        status: list[str] | None = None,
        name: str | None = None,
        wedding_id: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = 500,
    ) -> BatchResult:
        """Retry, compensate or cancel every workflow a filter matches (preview first)."""
        if action not in ("retry", "compensate", "cancel"):
            raise ValidationFailed("action", "must be retry, compensate or cancel")
        if action == "compensate" and not reason:
            raise ValidationFailed("reason", "compensating needs a reason")
        matched = await self.list_workflows(
            status=status,
            name=name,
            wedding_id=wedding_id,
            started_after=started_after,
            started_before=started_before,
            limit=limit,
        )
        result = BatchResult(action=action, matched=matched.total, dry_run=dry_run)
        if dry_run:
            result.preview = matched.workflows
            return result
        for workflow in matched.workflows:
            try:
                if action == "retry":
                    done = await self.retry(workflow.id, {"reason": reason}, actor=actor)
                elif action == "compensate":
                    done = await self.compensate(workflow.id, {"reason": reason or ""}, actor=actor)
                else:
                    done = await self.cancel(workflow.id, actor=actor, reason=reason)
            except (ConflictError, ValidationFailed, NotFoundError) as exc:
                result.results.append(
                    BatchItem(
                        workflow_id=workflow.id,
                        correlation_id=workflow.correlation_id,
                        ok=False,
                        status=workflow.current_status,
                        error=str(exc),
                    )
                )
            else:
                result.results.append(
                    BatchItem(
                        workflow_id=workflow.id,
                        correlation_id=workflow.correlation_id,
                        ok=True,
                        status=done.current_status,
                    )
                )
        return result

    # -- shared machinery ------------------------------------------------------------------------

    async def _operate(
        self,
        workflow_id: UUID | str,
        event: str,
        actor: str,
        reason: str | None,
        change: Any,
        *,
        step_name: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> WorkflowDetail:
        key = _uuid(workflow_id)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(Q.lock_workflow, key)
            if row is None:
                raise NotFoundError("workflow", str(workflow_id))
            fields = await change(conn, row, now)
            merged = {
                "current_status": row["current_status"],
                "phase": row["phase"],
                "paused_from": row["paused_from"],
                "compensation_request": row["compensation_request"],
                "completed_at": row["completed_at"],
                "next_run_at": row["next_run_at"],
                "error_details": row["error_details"],
                "current_step": row["current_step"],
                "context_data": row["context_data"],
                **fields,
            }
            updated = await conn.fetchrow(
                Q.operator_update_workflow,
                key,
                merged["current_status"],
                merged["phase"],
                merged["paused_from"],
                merged["compensation_request"],
                merged["completed_at"],
                merged["next_run_at"],
                merged["error_details"],
                merged["current_step"],
                merged["context_data"],
                now,
            )
            await conn.execute(
                Q.insert_event,
                key,
                step_name,
                event,
                {
                    "reason": reason,
                    "from": row["current_status"],
                    "to": merged["current_status"],
                    **(details or {}),
                },
                actor,
                now,
            )
            await record_action(
                conn,
                actor=actor,
                action=f"workflow.{event}",
                target_kind="workflow",
                target_id=str(key),
                at=now,
                reason=reason,
                details={"step": step_name, **(details or {})},
            )
            # The workflow trigger notifies only claimable work (migration 0005).
            await conn.execute(Q.announce_workflows, event, [key], 1, actor)
        assert updated is not None
        return _detail(updated)

    async def _set_steps(
        self,
        conn: Connection,
        workflow_id: UUID,
        now: datetime,
        from_statuses: set[str],
        *,
        status: str,
    ) -> None:
        await conn.execute(
            "UPDATE workflow_steps SET status = $3, next_attempt_at = NULL, updated_at = $4 "
            "WHERE workflow_id = $1 AND status = ANY($2::text[])",
            workflow_id,
            list(from_statuses),
            status,
            now,
        )

    async def _reset_failed_compensations(
        self, conn: Connection, workflow_id: UUID, now: datetime, *, manual: bool
    ) -> None:
        await conn.execute(
            "UPDATE workflow_steps SET compensation_status = 'pending', compensation_attempts = 0,"
            " compensation_next_attempt_at = NULL, updated_at = $2"
            " WHERE workflow_id = $1 AND compensation_status = 'failed'",
            workflow_id,
            now,
        )


def _require(row: asyncpg.Record, allowed: set[str], verb: str) -> None:
    if row["current_status"] not in allowed:
        hint = ""
        if row["current_status"] == "compensated" and verb == "retry":
            hint = "; its effects were undone: start a new workflow instead"
        raise ConflictError(
            f"cannot {verb} a workflow that is {row['current_status']} (it must be "
            f"{' or '.join(sorted(allowed))}){hint}"
        )


def _steps_to_retry(req: RetryWorkflowRequest, steps: list[asyncpg.Record]) -> list[asyncpg.Record]:
    if req.retry_strategy == "from_step":
        assert req.from_step is not None
        top = [s for s in steps if s["parent_step"] is None and s["step_order"] >= req.from_step]
        parents = {s["step_name"] for s in top}
        return top + [s for s in steps if s["parent_step"] in parents]
    if req.retry_strategy == "failed_steps":
        chosen = [s for s in steps if s["status"] in ("failed", "retrying", "cancelled")]
        parents = {s["parent_step"] for s in chosen if s["parent_step"]}
        return chosen + [s for s in steps if s["step_name"] in parents and s not in chosen]
    current = [s for s in steps if s["status"] in ("failed", "retrying")]
    if not current:
        current = [s for s in steps if s["status"] == "cancelled"][:1]
    parents = {s["parent_step"] for s in current if s["parent_step"]}
    return current + [s for s in steps if s["step_name"] in parents and s not in current]


def _step_rows(definition: WorkflowDefinition) -> list[dict[str, Any]]:
    rows = []
    for name, (step, parent, branch, order) in step_definitions(definition).items():
        action = getattr(step, "compensation_action", None)
        rows.append(
            {
                "step_name": name,
                "step_type": step.type,
                "step_order": order,
                "service_name": step.service_name,
                "service_endpoint": step.endpoint,
                "status": "pending",
                "max_retries": step.retry_policy.max_retries,
                "timeout_seconds": int(step.timeout_seconds),
                "compensation_action": action.model_dump(mode="json") if action else None,
                "parent_step": parent,
                "branch_name": branch,
                "step_definition": step.model_dump(mode="json"),
                "started_at": None,
            }
        )
    return rows


def _in_definition_order(steps: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Top-level steps by order, each parallel step followed by its branches' steps."""
    top = sorted((s for s in steps if s["parent_step"] is None), key=lambda s: s["step_order"])
    ordered: list[asyncpg.Record] = []
    for step in top:
        ordered.append(step)
        inner = [s for s in steps if s["parent_step"] == step["step_name"]]
        ordered.extend(sorted(inner, key=lambda s: (s["branch_name"] or "", s["step_order"])))
    return ordered


def _uuid(value: UUID | str, *, field: str = "workflow") -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        if field == "workflow":
            raise NotFoundError("workflow", value) from None
        raise ValidationFailed(field, f"{value!r} is not a UUID") from None


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def _summary(row: asyncpg.Record, now: datetime) -> WorkflowSummary:
    total = row["total_steps"] or 0
    error = row["error_details"] or {}
    return WorkflowSummary(
        id=row["id"],
        workflow_name=row["workflow_name"],
        workflow_version=row["workflow_version"],
        correlation_id=row["correlation_id"],
        wedding_id=row["wedding_id"],
        initiating_service=row["initiating_service"],
        current_status=row["current_status"],
        current_step=row["current_step"] or 0,
        total_steps=total,
        progress_percentage=round(100 * (row["current_step"] or 0) / total, 1) if total else 0,
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        duration_ms=_duration_ms(row["started_at"], row["completed_at"] or now),
        next_run_at=row["next_run_at"],
        lease_owner=row["lease_owner"],
        failed_step=error.get("step_name"),
        error_message=error.get("error_message"),
    )


def _detail(row: asyncpg.Record) -> WorkflowDetail:
    error = row["error_details"]
    return WorkflowDetail(
        id=row["id"],
        workflow_name=row["workflow_name"],
        workflow_version=row["workflow_version"],
        correlation_id=row["correlation_id"],
        wedding_id=row["wedding_id"],
        initiating_service=row["initiating_service"],
        current_status=row["current_status"],
        phase=row["phase"],
        current_step=row["current_step"] or 0,
        total_steps=row["total_steps"],
        context_data=row["context_data"] or {},
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        timeout_at=row["timeout_at"],
        next_run_at=row["next_run_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        compensation_request=row["compensation_request"],
        error_details=ErrorDetails.model_validate(error) if error else None,
    )


def _step_view(row: asyncpg.Record) -> StepView:
    return StepView(
        id=row["id"],
        step_name=row["step_name"],
        step_type=row["step_type"],
        step_order=row["step_order"],
        parent_step=row["parent_step"],
        branch_name=row["branch_name"],
        service_name=row["service_name"],
        status=row["status"],
        input_data=row["input_data"],
        output_data=row["output_data"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        duration_ms=_duration_ms(row["started_at"], row["completed_at"]),
        retry_count=row["retry_count"] or 0,
        max_retries=row["max_retries"],
        next_attempt_at=row["next_attempt_at"],
        error_message=row["error_message"],
        idempotency_key=row["idempotency_key"],
        compensation_status=row["compensation_status"],
        compensation_attempts=row["compensation_attempts"] or 0,
        compensation_error=row["compensation_error"],
        compensation_next_attempt_at=row["compensation_next_attempt_at"],
        compensated_at=row["compensated_at"],
        has_compensation=row["compensation_action"] is not None,
    )

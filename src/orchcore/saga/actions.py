"""Operator actions on workflows, one at a time or in batches, with their audit.

An action on a workflow that no daemon holds is applied at once: the row is locked, the
workflow loaded whole, changed by :mod:`orchcore.saga.operator` and written back with
the engine's one commit statement. An action on a workflow a daemon holds (a call is
in flight) is checked against what the database knows, then queued: that daemon
applies it at its next commit, with the outcome of the call it was waiting for, and
the action waits here a few seconds for that. Queued and not yet applied, it shows in
the workflow's ``pending_actions``, with the attempts it waits for in ``in_flight``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import ValidationError

from orchcore.clock import Clock
from orchcore.db import Connection, Database, Queries
from orchcore.errors import ConflictError, NotFoundError, ValidationFailed
from orchcore.saga.reads import WorkflowReader, as_workflow_id
from orchcore.saga.status import OperatorAction, WorkflowEvent
from orchcore.saga.views import BatchItem, BatchResult, WorkflowDetail
from orchcore.validation import parse

# The request models (and through them the bus's), the workflow's state and its write
# path are imported when an operator acts, as the transitions are: a face that only
# reads workflows (`orch status`, `orch workflow list`) holds this module too.
if TYPE_CHECKING:
    from orchcore.saga.models import CompensateWorkflowRequest, RetryWorkflowRequest
    from orchcore.saga.operator import OperatorRequest
    from orchcore.saga.state import WorkflowState

Q = Queries("orchcore.saga")

BatchAction = Literal["retry", "compensate", "cancel"]
BATCH_ACTIONS: dict[str, OperatorAction] = {
    "retry": OperatorAction.RETRY,
    "compensate": OperatorAction.COMPENSATE,
    "cancel": OperatorAction.CANCEL,
}
#: How long an action queued behind a call in flight is waited for before answering.
QUEUED_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


class OperatorActions:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        reader: WorkflowReader,
        *,
        queued_wait_seconds: float = QUEUED_WAIT_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._reader = reader
        self.queued_wait_seconds = queued_wait_seconds

    # -- the verbs ---------------------------------------------------------------------------

    async def pause(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self.act(workflow_id, OperatorAction.PAUSE, {}, actor=actor, reason=reason)

    async def resume(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        return await self.act(workflow_id, OperatorAction.RESUME, {}, actor=actor, reason=reason)

    async def cancel(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        """Stop the workflow where it is, without compensating (compensate undoes)."""
        return await self.act(workflow_id, OperatorAction.CANCEL, {}, actor=actor, reason=reason)

    async def compensate(
        self,
        workflow_id: UUID | str,
        request: CompensateWorkflowRequest | dict[str, Any],
        *,
        actor: str,
    ) -> WorkflowDetail:
        """Undo what may have taken effect (all, the definition's partial set, or named)."""
        from orchcore.saga.models import CompensateWorkflowRequest

        req = parse(CompensateWorkflowRequest, request)
        params = req.model_dump(mode="json", exclude={"reason"})
        return await self.act(
            workflow_id, OperatorAction.COMPENSATE, params, actor=actor, reason=req.reason
        )

    async def retry(
        self,
        workflow_id: UUID | str,
        request: RetryWorkflowRequest | dict[str, Any] | None = None,
        *,
        actor: str,
    ) -> WorkflowDetail:
        """Run again: the current step, every failed step, or everything from step N."""
        from orchcore.saga.models import RetryWorkflowRequest

        req = parse(RetryWorkflowRequest, request or {})
        params = req.model_dump(mode="json", exclude={"reason"})
        return await self.act(
            workflow_id, OperatorAction.RETRY, params, actor=actor, reason=req.reason
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
        """Treat a failed (or waiting) step as done with a supplied output, and carry on."""
        params = {"step_name": step_name, "output": output or {}}
        return await self.act(
            workflow_id, OperatorAction.SKIP_STEP, params, actor=actor, reason=reason
        )

    async def retry_compensation(
        self, workflow_id: UUID | str, *, actor: str, reason: str | None = None
    ) -> WorkflowDetail:
        """Try the failed compensation again (its retry budget starts afresh)."""
        return await self.act(
            workflow_id, OperatorAction.RETRY_COMPENSATION, {}, actor=actor, reason=reason
        )

    async def mark_compensated(
        self, workflow_id: UUID | str, step_name: str | None = None, *, actor: str, note: str
    ) -> WorkflowDetail:
        """Record that a person undid the step by hand; remaining compensations go on."""
        if not note.strip():
            raise ValidationFailed("note", "say what was done by hand")
        return await self.act(
            workflow_id,
            OperatorAction.MARK_COMPENSATED,
            {"step_name": step_name},
            actor=actor,
            reason=note,
        )

    # -- one action ----------------------------------------------------------------------------

    async def act(
        self,
        workflow_id: UUID | str,
        action: OperatorAction,
        params: dict[str, Any],
        *,
        actor: str,
        reason: str | None,
    ) -> WorkflowDetail:
        """Apply ``action`` now, or queue it for the daemon that holds the workflow."""
        # The transitions (and through them the whole saga engine) are imported when an
        # operator acts, not with the store: every face reads workflows, few act on them.
        from orchcore.saga import operator
        from orchcore.saga.drive import apply_command

        key = as_workflow_id(workflow_id)
        request = operator.OperatorRequest(action=action, params=params, actor=actor, reason=reason)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(Q.lock_workflow_whole, key)
            if row is None:
                raise NotFoundError("workflow", str(workflow_id))
            state, queued = _load(row)
            held = row["lease_owner"] is not None and row["lease_until"] >= now
            command_id: int | None = None
            if held:
                command_id = await self._queue(conn, state, request, now)
                event = WorkflowEvent.ACTION_QUEUED
            else:
                for command in queued:  # left by a daemon that died before applying them
                    state.settled_commands.append(apply_command(state, command, now, actor))
                event = operator.apply(state, request, now, "")
                await self._write(conn, state, now, actor)
            # The workflow trigger notifies only claimable work (migration 0005).
            await conn.execute(Q.announce_workflows, str(event), [key], 1, actor)
        if command_id is not None:
            await self._wait_until_applied(command_id)
        return await self._reader.detail(key)

    async def _queue(
        self, conn: Connection, state: WorkflowState, request: OperatorRequest, now: datetime
    ) -> int:
        """Refuse now what the database's view already refuses; queue the rest."""
        from orchcore.saga import operator

        operator.apply(copy.deepcopy(state), request, now, "")
        command_id: int = await conn.fetchval(
            Q.queue_command,
            state.id,
            str(request.action),
            request.params,
            request.actor,
            request.reason,
            now,
        )
        state.record(
            request.params.get("step_name"),
            WorkflowEvent.ACTION_QUEUED,
            request.actor,
            now,
            action=str(request.action),
            reason=request.reason,
            waits_for=[s.name for s in state.in_flight()],
        )
        await conn.execute(Q.insert_events, state.id, [e.as_record() for e in state.events])
        return command_id

    @staticmethod
    async def _write(conn: Connection, state: WorkflowState, now: datetime, actor: str) -> None:
        from orchcore.saga.persistence import write_changes

        changes = state.take_changes()
        revision = await write_changes(
            conn,
            state,
            changes,
            now=now,
            actor=actor,
            guard_owner=None,
            lease_owner=None,
            lease_until=None,
        )
        if revision is None:  # the row is locked: only a live lease taken meanwhile
            raise ConflictError("a daemon took the workflow meanwhile; try again")

    async def _wait_until_applied(self, command_id: int) -> None:
        """Wait a little for the daemon to apply a queued action; raise if it refused."""
        deadline = time.monotonic() + self.queued_wait_seconds
        while time.monotonic() < deadline:
            row = await self._db.fetchrow(Q.command_state, command_id)
            if row is None or row["state"] == "applied":
                return
            if row["state"] == "refused":
                raise ConflictError(row["outcome"] or "the action was refused")
            await asyncio.sleep(_POLL_SECONDS)

    # -- batches -------------------------------------------------------------------------------

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
        workflow_ids: list[UUID] | None = None,
        limit: int = 500,
    ) -> BatchResult:
        """Retry, compensate or cancel what a filter matches: preview first (dry run),
        then confirm with the previewed ``workflow_ids``; only those still matching the
        filter are acted on."""
        verb = BATCH_ACTIONS.get(action)
        if verb is None:
            raise ValidationFailed("action", "must be retry, compensate or cancel")
        if not (status or name or wedding_id or started_after or started_before):
            raise ValidationFailed(
                "filter",
                "give at least one of status, name, wedding_id, started_after, "
                "started_before: a batch acts on what a filter matches",
            )
        if verb == OperatorAction.COMPENSATE and not reason:
            raise ValidationFailed("reason", "compensating needs a reason")
        if not dry_run and workflow_ids is None:
            raise ValidationFailed(
                "workflow_ids", "confirm a batch with the workflow_ids its preview returned"
            )
        if workflow_ids is not None and len(workflow_ids) > limit:
            raise ValidationFailed("workflow_ids", f"at most {limit} in one batch")
        matched = await self._reader.list_workflows(
            status=status,
            name=name,
            wedding_id=wedding_id,
            started_after=started_after,
            started_before=started_before,
            ids=None if dry_run else workflow_ids,
            limit=limit,
        )
        if dry_run:
            return BatchResult(
                action=action,
                matched=matched.total,
                dry_run=True,
                preview=matched.workflows,
                workflow_ids=[w.id for w in matched.workflows],
            )
        still = {w.id: w for w in matched.workflows}
        result = BatchResult(action=action, matched=len(still), dry_run=False)
        for workflow_id in workflow_ids or []:
            result.results.append(await self._batch_item(verb, workflow_id, still, actor, reason))
        return result

    async def _batch_item(
        self,
        verb: OperatorAction,
        workflow_id: UUID,
        still: dict[UUID, Any],
        actor: str,
        reason: str | None,
    ) -> BatchItem:
        workflow = still.get(workflow_id)
        if workflow is None:
            return BatchItem(
                workflow_id=workflow_id,
                correlation_id="",
                ok=False,
                error="no longer matches the batch's filter (or does not exist)",
            )
        params = {"compensation_strategy": "all"} if verb == OperatorAction.COMPENSATE else {}
        try:
            done = await self.act(workflow_id, verb, params, actor=actor, reason=reason)
        except (ConflictError, ValidationFailed, NotFoundError) as exc:
            return BatchItem(
                workflow_id=workflow_id,
                correlation_id=workflow.correlation_id,
                ok=False,
                status=workflow.current_status,
                error=str(exc),
            )
        return BatchItem(
            workflow_id=workflow_id,
            correlation_id=workflow.correlation_id,
            ok=True,
            status=done.current_status,
        )


def _load(row: Any) -> tuple[WorkflowState, list[Any]]:
    from orchcore.saga.persistence import loaded

    try:
        return loaded(row)
    except ValidationError as exc:
        raise ConflictError(
            f"the workflow's stored definition no longer validates ({exc.error_count()} "
            "errors); it cannot be changed by the engine"
        ) from None

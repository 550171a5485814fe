"""Reading a workflow whole and writing its changes back: the one write path.

The messages a step publishes (the outbox) go in the same statement: PGMQ's send runs
only when the guard lets the rest be written, so a message is sent if and only if the
step that publishes it is recorded.

A drive (after a step) and an operator (when no daemon holds the workflow) both write
through :func:`write_changes`: the same statement, the same guard (revision read and
lease), so nothing one of them writes can be written over by the other unseen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from orchcore.db import Queries
from orchcore.saga.state import Changes, Command, WorkflowState

Q = Queries("orchcore.saga")


class Executor(Protocol):
    async def fetchval(self, query: str, *args: Any) -> Any: ...


def workflow_record(
    state: WorkflowState,
    *,
    lease_owner: str | None,
    lease_until: datetime | None,
    commit_id: UUID,
) -> dict[str, Any]:
    """The workflow row's changeable columns, JSON-ready (commit_progress's $1)."""
    return {
        "id": str(state.id),
        "current_status": state.status,
        "phase": state.phase,
        "current_step": state.current_step,
        "context_data": state.context,
        "error_details": state.error_details,
        "completed_at": _iso(state.completed_at),
        "next_run_at": _iso(state.next_run_at),
        "paused_from": state.paused_from,
        "compensation_request": state.compensation_request,
        "lease_owner": lease_owner,
        "lease_until": _iso(lease_until),
        "commit_id": str(commit_id),
    }


async def write_changes(
    db: Executor,
    state: WorkflowState,
    changes: Changes,
    *,
    now: datetime,
    actor: str,
    guard_owner: str | None,
    lease_owner: str | None,
    lease_until: datetime | None,
    commit_id: UUID | None = None,
) -> int | None:
    """Write ``changes``; the new revision, or None when the guard failed (nothing written).

    ``guard_owner``: the lease holder the row must still name; None means no live lease
    may be held (an operator changing a workflow nobody drives).
    """
    revision: int | None = await db.fetchval(
        Q.commit_progress,
        workflow_record(
            state,
            lease_owner=lease_owner,
            lease_until=lease_until,
            commit_id=commit_id or uuid4(),
        ),
        state.revision,
        now,
        guard_owner,
        [s.as_record() for s in changes.steps],
        [e.as_record() for e in changes.events],
        [a.as_record() for a in changes.alerts],
        [c.as_record() for c in changes.commands],
        changes.progressed,
        actor,
        [a.as_record() for a in changes.audits],
        [m.as_record() for m in changes.messages],
    )
    return revision


def loaded(row: Any) -> tuple[WorkflowState, list[Command]]:
    """A workflow and its queued commands from a claim_workflows / lock_workflow_whole row.

    Raises pydantic's ValidationError when its stored definition no longer validates.
    """
    state = WorkflowState.from_row(row, list(row["steps"]))
    commands = [Command.from_record(c) for c in row["commands"]]
    return state, commands


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

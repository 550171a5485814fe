"""Reading workflows: one in full (the seed's GetWorkflowStatusResponse), many filtered
(GetWorkflowsResponse), and counts by status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.errors import NotFoundError, ValidationFailed
from orchcore.saga.status import (
    COMPENSATION_EVENTS,
    CompensationStatus,
    StepStatus,
    WorkflowStatus,
)
from orchcore.saga.views import (
    ErrorDetails,
    GetWorkflowsResponse,
    GetWorkflowStatusResponse,
    InFlightStep,
    PendingAction,
    StepTiming,
    StepView,
    TimelineEntry,
    WorkflowDetail,
    WorkflowSummary,
)

Q = Queries("orchcore.saga")

ALL_STATUSES = tuple(WorkflowStatus)


class WorkflowReader:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def status(self, workflow_id: UUID | str) -> GetWorkflowStatusResponse:
        """The seed's GetWorkflowStatusResponse, with the execution timeline."""
        key = as_workflow_id(workflow_id)
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            row = await conn.fetchrow(Q.workflow_row, key)
            if row is None:
                raise NotFoundError("workflow", str(workflow_id))
            steps = await conn.fetch(Q.steps_of, key)
            events = await conn.fetch(Q.timeline_of, key)
            queued = await conn.fetch(Q.pending_commands_of, key)
        detail = workflow_detail(row, queued, steps)
        timeline = [
            TimelineEntry(
                timestamp=e["occurred_at"],
                event=e["event"],
                step_name=e["step_name"],
                details=e["details"],
                actor=e["actor"],
            )
            for e in events
        ]
        return GetWorkflowStatusResponse(
            workflow=detail,
            steps=[step_view(s, timeline) for s in in_definition_order(steps)],
            execution_timeline=timeline,
        )

    async def detail(self, workflow_id: UUID) -> WorkflowDetail:
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            row = await conn.fetchrow(Q.workflow_row, workflow_id)
            if row is None:
                raise NotFoundError("workflow", str(workflow_id))
            queued = await conn.fetch(Q.pending_commands_of, workflow_id)
            steps = await conn.fetch(Q.steps_of, workflow_id) if queued else []
        return workflow_detail(row, queued, steps)

    async def find(self, key: str) -> UUID:
        """A workflow by id or correlation id."""
        try:
            candidate = UUID(key)
        except ValueError:
            candidate = None
        if candidate is not None and await self._db.fetchval(Q.workflow_exists, candidate):
            return candidate
        row = await self._db.fetchrow(Q.workflow_by_correlation, key)
        if row is None:
            raise NotFoundError("workflow", key)
        found: UUID = row["id"]
        return found

    async def list_workflows(
        self,
        *,
        status: Sequence[str] | None = None,
        name: str | None = None,
        wedding_id: UUID | str | None = None,
        correlation_id: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        ids: Sequence[UUID] | None = None,
        limit: int = 50,
        offset: int = 0,
        after: str | None = None,
    ) -> GetWorkflowsResponse:
        """The seed's GetWorkflowsResponse, filtered, newest first; status_summary covers
        every status. ``after``: the ``next_cursor`` of the page before, to read the next
        one by the index instead of counting ``offset`` rows past (not both: a cursor
        says where the page starts).

        ``total`` is exact for a filter by status alone (from the kept counts); a filter
        on anything else is counted up to :data:`COUNT_AT_MOST`, beyond which ``total``
        is that bound and ``total_exact`` is false."""
        for value in status or []:
            if value not in ALL_STATUSES:
                raise ValidationFailed(
                    "status", f"{value!r} is not one of {', '.join(ALL_STATUSES)}"
                )
        wedding = as_uuid(wedding_id, "wedding_id") if wedding_id else None
        if after and offset:
            raise ValidationFailed("offset", "give offset or after, not both")
        keyset = parse_cursor(after) if after else (None, None)
        statuses = list(dict.fromkeys(status)) if status else None
        one_status = statuses[0] if statuses and len(statuses) == 1 else None
        filters = (
            statuses,
            name,
            wedding,
            correlation_id,
            started_after,
            started_before,
        )
        id_list = list(ids) if ids is not None else None
        by_status_alone = id_list is None and not any(filters[1:])
        async with self._db.pool.acquire() as conn, conn.transaction(readonly=True):
            # Each call's own plan: a plan cached for "every status" (newest first through
            # the listing index) would walk a year of history to find the few active ones.
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            listed = (None if one_status else statuses, *filters[1:])
            rows = await conn.fetch(
                Q.list_workflows, *listed, limit, offset, id_list, *keyset, one_status
            )
            summary = _counts(await conn.fetch(Q.status_summary))
            if by_status_alone:
                chosen = statuses or list(summary)
                total, exact = sum(summary[s] for s in chosen), True
            else:
                counted = await conn.fetchval(
                    Q.count_workflows, *filters, id_list, COUNT_AT_MOST + 1
                )
                total, exact = min(counted, COUNT_AT_MOST), counted <= COUNT_AT_MOST
        return GetWorkflowsResponse(
            workflows=[workflow_summary(r, self._clock.now()) for r in rows],
            status_summary=summary,
            total=total,
            total_exact=exact,
            next_cursor=cursor_of(rows[-1]) if rows and len(rows) == limit else None,
        )

    async def status_counts(self) -> dict[str, int]:
        return _counts(await self._db.fetch(Q.status_summary))


#: How far a filter beyond status is counted: past it, a total is this lower bound.
COUNT_AT_MOST = 10_000


def _counts(rows: Sequence[asyncpg.Record]) -> dict[str, int]:
    """Every status with its count (0 for those no workflow has)."""
    summary = {s.value: 0 for s in ALL_STATUSES}
    summary |= {r["current_status"]: r["n"] for r in rows}
    return summary


def cursor_of(row: asyncpg.Record) -> str:
    """Where the next page starts: after this row, in the list's order. URL-safe as it
    stands (UTC as Z, not +00:00: a "+" pasted into a query string reads as a space),
    every microsecond kept (the keyset must name the row exactly)."""
    started_at: datetime = row["started_at"]
    return f"{started_at.astimezone(UTC).strftime(CURSOR_TIME)}_{row['id']}"


#: A cursor's instant: fixed width, in UTC.
CURSOR_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_cursor(text: str) -> tuple[datetime, UUID]:
    """A cursor's keyset. Any ISO instant with a time zone reads (cursors of earlier
    versions said +00:00); the instant is taken to UTC here, where one that has no
    UTC year (0001-01-01T00:00+01:00) is refused, not left to fail in the driver."""
    when, _, key = text.rpartition("_")
    try:
        started_at = datetime.fromisoformat(when)
        if started_at.tzinfo is None:
            raise ValueError("no time zone")
        return started_at.astimezone(UTC), UUID(key)
    except (ValueError, OverflowError):
        # The text is not echoed: it may be long, and the caller has it.
        raise ValidationFailed(
            "after", "not a cursor (give the next_cursor of an earlier page)"
        ) from None


def as_workflow_id(value: UUID | str) -> UUID:
    """A workflow's id; a string that is no UUID names no workflow."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        raise NotFoundError("workflow", value) from None


def as_uuid(value: UUID | str, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed(field, f"{value!r} is not a UUID") from None


def in_definition_order(steps: Sequence[asyncpg.Record]) -> list[asyncpg.Record]:
    """Top-level steps by order, each parallel step followed by its branches' steps."""
    top = sorted((s for s in steps if s["parent_step"] is None), key=lambda s: s["step_order"])
    ordered: list[asyncpg.Record] = []
    for step in top:
        ordered.append(step)
        inner = [s for s in steps if s["parent_step"] == step["step_name"]]
        ordered.extend(sorted(inner, key=lambda s: (s["branch_name"] or "", s["step_order"])))
    return ordered


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def workflow_summary(row: asyncpg.Record, now: datetime) -> WorkflowSummary:
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


def workflow_detail(
    row: asyncpg.Record,
    queued: Sequence[asyncpg.Record] = (),
    steps: Sequence[asyncpg.Record] = (),
) -> WorkflowDetail:
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
        trace_id=row.get("trace_id"),
        drive_crashes=row["drive_crashes"],
        pending_actions=[
            PendingAction(
                id=q["id"],
                action=q["action"],
                requested_by=q["actor"],
                requested_at=q["requested_at"],
                reason=q["reason"],
            )
            for q in queued
        ],
        in_flight=_in_flight(steps) if queued else [],
    )


def _in_flight(steps: Sequence[asyncpg.Record]) -> list[InFlightStep]:
    found = []
    for step in steps:
        if step["status"] == StepStatus.RUNNING and step["step_type"] == "service_call":
            found.append(
                InFlightStep(
                    step_name=step["step_name"],
                    direction="forward",
                    deadline=step["attempt_deadline"],
                )
            )
        elif step["compensation_status"] == CompensationStatus.RUNNING:
            found.append(
                InFlightStep(
                    step_name=step["step_name"],
                    direction="compensate",
                    deadline=step["attempt_deadline"],
                )
            )
    return found


def step_view(row: asyncpg.Record, timeline: Sequence[TimelineEntry] = ()) -> StepView:
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
        generation=row["generation"],
        outcome_unknown=row["outcome_unknown"],
        next_attempt_at=row["next_attempt_at"],
        attempt_deadline=row["attempt_deadline"],
        error_message=row["error_message"],
        idempotency_key=row["idempotency_key"],
        compensation_status=row["compensation_status"],
        compensation_attempts=row["compensation_attempts"] or 0,
        compensation_error=row["compensation_error"],
        compensation_next_attempt_at=row["compensation_next_attempt_at"],
        compensated_at=row["compensated_at"],
        has_compensation=row["compensation_action"] is not None,
        timing=step_timing(row, [e for e in timeline if e.step_name == row["step_name"]]),
    )


def step_timing(row: asyncpg.Record, events: Sequence[TimelineEntry]) -> StepTiming:
    """When the step ran forward and when it was undone, from its columns, filled in by
    its own timeline events where a column is empty (a failed step has no completion
    time: its last attempt's event ends its run). An end left None is still going."""
    forward = [e for e in events if e.event not in COMPENSATION_EVENTS]
    undo = [e for e in events if e.event in COMPENSATION_EVENTS]
    ran_from = row["started_at"] or (forward[0].timestamp if forward else None)
    ran_until = None
    if ran_from is not None and row["status"] != StepStatus.RUNNING:
        ran_until = row["completed_at"] or max((e.timestamp for e in forward), default=ran_from)
        ran_until = max(ran_until, ran_from)
    undo_from = undo[0].timestamp if undo else None
    undo_until = None
    if undo_from is not None and row["compensation_status"] != CompensationStatus.RUNNING:
        undo_until = max(undo_from, row["compensated_at"] or undo[-1].timestamp)
    waits_until = None
    if row["status"] == StepStatus.RETRYING:
        waits_until = row["next_attempt_at"]
    elif row["compensation_status"] == CompensationStatus.RETRYING:
        waits_until = row["compensation_next_attempt_at"]
    return StepTiming(
        ran_from=ran_from,
        ran_until=ran_until,
        undo_from=undo_from,
        undo_until=undo_until,
        waits_until=waits_until,
    )

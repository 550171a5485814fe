"""The saga's statuses are spelt once (orchcore.saga.status); SQL repeats some of the sets,
so these tests hold the SQL to them: the CHECK constraints, the partial index of due
work, the trigger that wakes daemons and the claim query."""

from __future__ import annotations

import re

import asyncpg

from orchcore.db import Queries
from orchcore.saga.status import (
    ALLOWED_FROM,
    RUNNABLE,
    TERMINAL,
    CompensationStatus,
    OperatorAction,
    Phase,
    StepStatus,
    WorkflowStatus,
)

QUOTED = re.compile(r"'([a-z_]+)'")


def quoted(text: str) -> set[str]:
    return set(QUOTED.findall(text))


async def constraint(conn: asyncpg.Connection, name: str) -> str:
    definition: str = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", name
    )
    return definition


async def test_check_constraints_admit_exactly_the_enums(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        workflow = await constraint(conn, "distributed_workflows_status_check")
        step = await constraint(conn, "workflow_steps_status_check")
        compensation = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'workflow_steps'::regclass AND contype = 'c' "
            "AND pg_get_constraintdef(oid) LIKE '%compensation_status%'"
        )
        phase = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'distributed_workflows'::regclass AND contype = 'c' "
            "AND pg_get_constraintdef(oid) LIKE '%phase%'"
        )
    finally:
        await conn.close()
    assert quoted(workflow) == {s.value for s in WorkflowStatus}
    assert quoted(step) == {s.value for s in StepStatus}
    assert quoted(compensation) == {s.value for s in CompensationStatus}
    assert quoted(phase) == {p.value for p in Phase}


async def test_due_index_trigger_and_claim_use_the_runnable_set(dsn: str) -> None:
    runnable = {s.value for s in RUNNABLE}
    conn = await asyncpg.connect(dsn)
    try:
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_distributed_workflows_due'"
        )
        trigger = await conn.fetchval(
            "SELECT prosrc FROM pg_proc WHERE proname = 'orch_notify_workflow'"
        )
    finally:
        await conn.close()
    assert quoted(index) == runnable
    assert quoted(trigger.split("THEN")[0]) == runnable  # "claimable" is runnable and unleased
    claim = Queries("orchcore.saga").claim_workflows
    assert quoted(claim.split("AND next_run_at")[0]) == runnable


def test_the_sets_partition_the_statuses() -> None:
    assert RUNNABLE.isdisjoint(TERMINAL)
    assert RUNNABLE | TERMINAL | {WorkflowStatus.PAUSED} == set(WorkflowStatus)
    assert set(ALLOWED_FROM) == set(OperatorAction)
    assert all(allowed <= set(WorkflowStatus) for allowed in ALLOWED_FROM.values())
    assert ALLOWED_FROM[OperatorAction.CANCEL].isdisjoint(TERMINAL)

"""A year of history stays cheap to read: workflows counted by status as they change
(migration 0012's trigger, read by the Overview and the Workflows pane), the list paged
by keyset, and the statements behind claims, starts and lists on their indexes."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from orchcore import Orch
from orchcore.db import Queries
from orchcore.errors import ValidationFailed
from orchcore.saga import reads
from orchcore.saga.status import RUNNABLE, TERMINAL, WorkflowStatus
from tests.support.sagas import BOOKING, Env

Q = Queries("orchcore.saga")

_REAL_COUNTS = "SELECT current_status, count(*) AS n FROM distributed_workflows GROUP BY 1"

# $1 how many, $2 status per row (cycled), $3 name; started a second apart, newest
# last, every third one at the same time as the one before (ties broken by id).
_INSERT_WORKFLOWS = """
INSERT INTO distributed_workflows (workflow_name, workflow_definition, correlation_id,
    initiating_service, current_status, total_steps, started_at, completed_at, next_run_at,
    created_at)
SELECT $3, '{}'::jsonb, $3 || '-' || n, 'booking', ($2::text[])[1 + n % cardinality($2)], 3,
       t, CASE WHEN ($2::text[])[1 + n % cardinality($2)] = 'completed' THEN t END,
       CASE WHEN ($2::text[])[1 + n % cardinality($2)] = 'pending' THEN t END, t
FROM generate_series(1, $1::int) AS n,
     LATERAL (SELECT timestamptz '2026-01-01' + make_interval(secs => n - n % 3)) AS s(t)
"""


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


async def real_counts(conn: asyncpg.Connection) -> dict[str, int]:
    counted = {s.value: 0 for s in WorkflowStatus}
    counted |= {r["current_status"]: r["n"] for r in await conn.fetch(_REAL_COUNTS)}
    return counted


# -- counts kept as statuses change ------------------------------------------------------------


async def test_counts_follow_a_random_mix_of_saga_transitions(env: Env, dsn: str) -> None:
    """Starts, completions, compensations, failures, retries, pauses, resumes, cancels,
    parked compensations and a duplicate start, in a random order: the kept counts are
    the real ones after each of them, and between the steps of the longer ones."""
    await env.orch.workflow_definitions.register(
        {**BOOKING, "name": "no-undo", "compensation_strategy": "none"}, actor="t"
    )
    venue, catering, payment = (env.services[n] for n in ("venue", "catering", "payment"))
    conn = await asyncpg.connect(dsn)

    async def check() -> None:
        real = await real_counts(conn)
        kept = await conn.fetch(
            "SELECT current_status, sum(n) AS n FROM workflow_status_counts GROUP BY 1"
        )
        assert {r["current_status"]: r["n"] for r in kept if r["n"]} == {
            k: v for k, v in real.items() if v
        }
        assert await env.orch.workflows.status_counts() == real

    async def completes() -> None:
        await env.until(await env.start(), "completed")

    async def compensated_by_failure() -> None:
        payment.always_fail["/charges"] = 409
        await env.until(await env.start(), "compensated")
        del payment.always_fail["/charges"]

    async def failed_then_retried() -> None:
        payment.always_fail["/charges"] = 402
        workflow_id = await env.start("no-undo")
        await env.until(workflow_id, "failed")
        await check()
        del payment.always_fail["/charges"]
        await env.orch.workflows.retry(workflow_id, actor="ops")
        await env.until(workflow_id, "completed")

    async def paused_and_resumed() -> None:
        catering.fail["/orders"] = [503]
        workflow_id = await env.start()
        await env.until(workflow_id, "retrying")
        await env.orch.workflows.pause(workflow_id, actor="ops")
        await check()
        await env.orch.workflows.resume(workflow_id, actor="ops")
        await env.advance_until(workflow_id, "completed", step=0.2)

    async def cancelled() -> None:
        catering.fail["/orders"] = [503]
        workflow_id = await env.start()
        await env.until(workflow_id, "retrying")
        await env.orch.workflows.cancel(workflow_id, actor="ops", reason="called off")
        catering.fail["/orders"] = []

    async def compensated_by_hand() -> None:
        payment.always_fail["/charges"] = 402
        venue.always_fail["/reservations/cancel"] = 500
        workflow_id = await env.start()
        await env.advance_until(workflow_id, "compensation_failed", step=0.2)
        await check()
        await env.orch.workflows.mark_compensated(
            workflow_id, "reserve_venue", actor="ops", note="by phone"
        )
        await env.until(workflow_id, "compensated")
        del payment.always_fail["/charges"], venue.always_fail["/reservations/cancel"]

    async def undone_after_completing() -> None:
        workflow_id = await env.start()
        await env.until(workflow_id, "completed")
        await env.orch.workflows.compensate(
            workflow_id,
            {
                "reason": "called off",
                "compensation_strategy": "custom",
                "custom_steps": ["reserve_venue"],
            },
            actor="ops",
        )
        await env.until(workflow_id, "compensated")

    async def started_twice() -> None:
        first = await env.start(correlation_id="twice")
        await env.start(correlation_id="twice")  # the existing one: nothing new to count
        await env.until(first, "completed")

    scenarios = [
        completes,
        compensated_by_failure,
        failed_then_retried,
        paused_and_resumed,
        cancelled,
        compensated_by_hand,
        undone_after_completing,
    ]
    try:
        await started_twice()
        rng = random.Random(12)
        for _ in range(2):
            rng.shuffle(scenarios)
            for scenario in scenarios:
                await scenario()
                await check()
        assert sum((await env.orch.workflows.status_counts()).values()) == 15
    finally:
        await conn.close()


async def test_counts_follow_concurrent_inserts_updates_and_deletes(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Whatever writes the table (several connections at once, hence several shards):
    the kept counts stay the real ones, and no shard's row is left for nothing."""
    statuses = [s.value for s in WorkflowStatus]
    await conn.execute(_INSERT_WORKFLOWS, 300, statuses, "mix")

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        own = await asyncpg.connect(dsn)
        try:
            for _ in range(150):
                n = rng.randrange(1, 301)
                roll = rng.random()
                if roll < 0.8:
                    await own.execute(
                        "UPDATE distributed_workflows SET current_status = $1 "
                        "WHERE correlation_id = $2",
                        rng.choice(statuses),
                        f"mix-{n}",
                    )
                elif roll < 0.9:
                    await own.execute(
                        "DELETE FROM distributed_workflows WHERE correlation_id = $1", f"mix-{n}"
                    )
                else:
                    await own.execute(
                        _INSERT_WORKFLOWS.replace(
                            "$3 || '-' || n", "$3 || '-' || n || '-' || gen_random_uuid()"
                        ),
                        2,
                        [rng.choice(statuses)],
                        "more",
                    )
        finally:
            await own.close()

    await asyncio.gather(*(writer(seed) for seed in range(4)))
    # an update that leaves the status alone is no change
    await conn.execute("UPDATE distributed_workflows SET current_step = current_step + 1")
    kept = {r["current_status"]: r["n"] for r in await conn.fetch(Q.status_summary)}
    real = {k: v for k, v in (await real_counts(conn)).items() if v}
    assert kept == real
    assert await conn.fetchval("SELECT count(DISTINCT shard) FROM workflow_status_counts") > 1


async def test_recount_after_a_load_that_skipped_triggers(conn: asyncpg.Connection) -> None:
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(_INSERT_WORKFLOWS, 50, ["completed", "failed"], "loaded")
    await conn.execute("RESET session_replication_role")
    assert await conn.fetch(Q.status_summary) == []  # the load went past the trigger
    await conn.execute("SELECT orch_recount_workflows()")
    kept = {r["current_status"]: r["n"] for r in await conn.fetch(Q.status_summary)}
    assert kept == {"completed": 25, "failed": 25}


# -- the list, page by page ------------------------------------------------------------------


async def test_keyset_pages_cover_the_list_once_in_order(
    orch: Orch, conn: asyncpg.Connection
) -> None:
    statuses = ["completed", "failed", "compensated", "running", "pending"]
    await conn.execute(_INSERT_WORKFLOWS, 230, statuses, "paged")
    newest_first = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM distributed_workflows ORDER BY started_at DESC, id DESC"
        )
    ]

    async def pages(**filters: Any) -> list[Any]:
        seen, after = [], None
        while True:
            page = await orch.workflows.list_workflows(limit=40, after=after, **filters)
            seen.extend(w.id for w in page.workflows)
            assert len(page.workflows) <= 40
            if page.next_cursor is None:
                return seen
            after = page.next_cursor

    assert await pages() == newest_first
    failed = [w for w in newest_first if await _status(conn, w) == "failed"]
    assert await pages(status=["failed"]) == failed
    first = await orch.workflows.list_workflows(status=["failed"], limit=40)
    assert (first.total, first.total_exact) == (46, True)
    by_offset = await orch.workflows.list_workflows(limit=40, offset=40)
    second = await orch.workflows.list_workflows(
        limit=40, after=(await orch.workflows.list_workflows(limit=40)).next_cursor
    )
    assert [w.id for w in second.workflows] == [w.id for w in by_offset.workflows]
    with pytest.raises(ValidationFailed, match="after"):
        await orch.workflows.list_workflows(after="yesterday")


async def _status(conn: asyncpg.Connection, workflow_id: Any) -> str:
    status: str = await conn.fetchval(
        "SELECT current_status FROM distributed_workflows WHERE id = $1", workflow_id
    )
    return status


async def test_totals_exact_by_status_and_bounded_beyond(
    orch: Orch, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await conn.execute(_INSERT_WORKFLOWS, 30, ["completed", "failed", "running"], "counted")
    everything = await orch.workflows.list_workflows(limit=5)
    assert (everything.total, everything.total_exact) == (30, True)
    assert everything.status_summary["running"] == 10
    monkeypatch.setattr(reads, "COUNT_AT_MOST", 12)
    by_name = await orch.workflows.list_workflows(name="counted", limit=5)
    assert (by_name.total, by_name.total_exact) == (12, False)  # at least 12
    few = await orch.workflows.list_workflows(name="counted", status=["running"], limit=5)
    assert (few.total, few.total_exact) == (10, True)


# -- plans on a table with history ------------------------------------------------------------


async def _plan(conn: asyncpg.Connection, sql: str, *params: Any) -> str:
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await conn.fetch(f"EXPLAIN {sql}", *params)
    finally:
        await tx.rollback()
    return "\n".join(r[0] for r in rows)


async def test_claims_lists_and_estimates_read_by_index_past_the_history(
    orch: Orch, conn: asyncpg.Connection
) -> None:
    ended = [s.value for s in TERMINAL]
    await conn.execute(_INSERT_WORKFLOWS, 20_000, ended, "history")
    await conn.execute(_INSERT_WORKFLOWS, 20, [s.value for s in RUNNABLE], "live")
    await conn.execute("ANALYZE distributed_workflows")
    now = orch.clock.now()

    # Claims look only at workflows not ended: through one of the partial indexes.
    claim = await _plan(conn, Q.claim_workflows, now, "d", 64, 30.0, "d")
    assert re.search(r"Index Scan using idx_distributed_workflows_(due|active) ", claim)
    assert "Seq Scan on distributed_workflows" not in claim
    active = [s.value for s in WorkflowStatus if s not in TERMINAL]
    filters = (None, None, None, None, None)
    listing = await _plan(conn, Q.list_workflows, active, *filters, 100, 0, None, None, None, None)
    assert "idx_distributed_workflows_active" in listing
    # A page of every workflow, or of one status, is read in the index's order and
    # stops at the page's end: nothing sorted.
    everything = await _plan(conn, Q.list_workflows, None, *filters, 100, 0, *[None] * 4)
    assert "idx_distributed_workflows_listing" in everything
    assert "Sort" not in everything
    one = await _plan(conn, Q.list_workflows, None, *filters, 100, 0, *[None] * 3, "failed")
    assert "Sort" not in one and "Seq Scan" not in one
    estimate = await _plan(conn, Q.median_duration, "history")
    assert "Seq Scan" not in estimate  # the newest runs of the name, by an index
    assert "distributed_workflows" not in await _plan(conn, Q.status_summary)

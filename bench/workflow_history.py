"""A year of finished workflows, with their steps and timeline events, filled in bulk.

Like the registry fill in ``scratch_database.py``, setup is not what is measured, so
the history is written by set-based SQL (``INSERT ... SELECT FROM generate_series``),
one statement a chunk, not through the engine (a million sagas through the API would
take hours). The rows look like what the engine leaves behind: each workflow copies a
registered definition of three service_call steps (the template, renamed into a few
workflow names), has its three step rows and the timeline a drive writes (started,
claimed, an attempt's start and end per step reached, the end), and ended

- completed (90 %), compensated (5 %), failed (3 %), cancelled (1.5 %) or
  compensation_failed (0.5 %, what waits for a person);
- started at a time spread evenly over the year before ``now`` (oldest first, as
  they were written), a few seconds long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg

#: (workflow name, share of the history in percent); the first one is the template.
HISTORY_NAMES = (("", 40), ("booking-history", 30), ("reschedule-history", 20))
#: The rest of the share goes to this name.
LAST_NAME = "refund-history"

_DEFINITION_VARIANTS = """
INSERT INTO workflow_definitions (workflow_name, workflow_version, definition, created_by,
                                  created_at)
SELECT v.name, d.workflow_version, jsonb_set(d.definition, '{name}', to_jsonb(v.name)),
       'bench', d.created_at
FROM workflow_definitions d, unnest($2::text[]) AS v(name)
WHERE d.workflow_name = $1
ON CONFLICT DO NOTHING
"""

_DEFINITIONS = """
SELECT workflow_name, id, definition FROM workflow_definitions
WHERE workflow_name = ANY($1::text[])
"""

# $1 first number, $2 last number, $3 how many in all, $4 now, $5 definitions as JSON
# [{name, id, definition}] in the order of $6, $6 cumulative shares (percent) per name.
_FILL_CHUNK = """
WITH defs AS (
    SELECT (d ->> 'id')::uuid AS id, d ->> 'name' AS name, d -> 'definition' AS definition,
           ord
    FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(d, ord)
), src AS MATERIALIZED (
    SELECT n, random() AS r, random() AS pick, 1 + n % 3 AS fails_at,
           $4::timestamptz - interval '365 days' * (1 - n::float8 / $3)
               - make_interval(secs => random() * 30) AS started_at,
           make_interval(secs => 0.3 + random() * 3) AS took
    FROM generate_series($1::bigint, $2::bigint) AS n
), shaped AS (
    SELECT src.*, defs.id AS definition_id, defs.name, defs.definition,
           CASE WHEN r < 0.90 THEN 'completed' WHEN r < 0.95 THEN 'compensated'
                WHEN r < 0.98 THEN 'failed' WHEN r < 0.995 THEN 'cancelled'
                ELSE 'compensation_failed' END AS status
    FROM src
    JOIN defs ON defs.ord = (SELECT min(i) FROM unnest($6::int[]) WITH ORDINALITY
                             AS s(bound, i) WHERE src.pick * 100 < s.bound)
), w AS (
    INSERT INTO distributed_workflows (
        id, workflow_name, workflow_version, workflow_definition, definition_id,
        correlation_id, wedding_id, initiating_service, current_status, current_step,
        total_steps, context_data, error_details, started_at, completed_at, timeout_at,
        next_run_at, phase, trace_id, revision, created_at, updated_at)
    SELECT gen_random_uuid(), name, definition ->> 'version', definition, definition_id,
           'hist-' || n, gen_random_uuid(), 'bench', status,
           CASE WHEN status = 'completed' THEN 3 ELSE fails_at - 1 END, 3,
           jsonb_build_object('saga', n, 'step_1_id', '1-' || n),
           CASE WHEN status = 'completed' THEN NULL ELSE jsonb_build_object(
               'step_name', 'step_' || fails_at, 'error_message', 'HTTP 503 from participant',
               'retry_count', 3,
               'phase', CASE WHEN status LIKE 'compensat%' THEN 'compensate'
                             ELSE 'forward' END) END,
           started_at, started_at + took, started_at + interval '30 minutes',
           NULL, CASE WHEN status LIKE 'compensat%' THEN 'compensate' ELSE 'forward' END,
           md5(n::text || random()::text), 6, started_at, started_at + took
    FROM shaped
    RETURNING id, current_status, started_at, completed_at, current_step, workflow_definition
), steps AS (
    SELECT w.id AS workflow_id, w.current_status AS wf_status, w.started_at, w.completed_at,
           s.step, s.ord::int AS step_order,
           CASE
               WHEN w.current_status = 'completed' OR s.ord <= w.current_step THEN
                   CASE WHEN w.current_status = 'compensated' THEN 'compensated'
                        ELSE 'completed' END
               WHEN s.ord = w.current_step + 1 AND w.current_status <> 'cancelled'
                   THEN 'failed'
               ELSE 'cancelled' END AS status
    FROM w, jsonb_array_elements(w.workflow_definition -> 'steps') WITH ORDINALITY
        AS s(step, ord)
), ws AS (
    INSERT INTO workflow_steps (
        workflow_id, step_name, step_type, step_order, service_name, service_endpoint,
        input_data, output_data, status, retry_count, max_retries, timeout_seconds,
        started_at, completed_at, error_message, step_definition, idempotency_key,
        completion_seq, compensation_status, created_at, updated_at)
    SELECT workflow_id, step ->> 'name', step ->> 'type', step_order, step ->> 'service_name',
           step ->> 'endpoint', '{}'::jsonb,
           CASE WHEN status IN ('completed', 'compensated')
                THEN jsonb_build_object('id', step_order || '-x') END,
           status, CASE WHEN status = 'failed' THEN 3 ELSE 0 END, 3, 30,
           CASE WHEN status <> 'cancelled' THEN started_at END,
           CASE WHEN status IN ('completed', 'compensated') THEN completed_at END,
           CASE WHEN status = 'failed' THEN 'HTTP 503 from participant' END,
           step, workflow_id::text || ':' || (step ->> 'name') || ':1',
           CASE WHEN status IN ('completed', 'compensated') THEN step_order END,
           CASE WHEN status = 'compensated' THEN 'completed'
                WHEN wf_status = 'compensation_failed' AND status = 'completed' THEN 'failed'
                END,
           started_at, completed_at
    FROM steps
    RETURNING 1
), timeline AS (
    SELECT id, NULL::text AS step_name, 'workflow_started' AS event, started_at AS at
    FROM w
    UNION ALL SELECT id, NULL, 'claimed', started_at FROM w
    UNION ALL
    SELECT workflow_id, step ->> 'name', e.event, started_at
    FROM steps, LATERAL (VALUES ('attempt_started'),
        (CASE WHEN status = 'failed' THEN 'attempt_failed' ELSE 'attempt_succeeded' END),
        (CASE WHEN status = 'compensated' THEN 'compensation_succeeded' END)) AS e(event)
    WHERE status <> 'cancelled' AND e.event IS NOT NULL
    UNION ALL
    SELECT id, NULL, CASE current_status WHEN 'completed' THEN 'workflow_completed'
                          WHEN 'compensated' THEN 'workflow_compensated'
                          WHEN 'failed' THEN 'workflow_failed'
                          WHEN 'cancelled' THEN 'cancelled'
                          ELSE 'compensation_failed' END, completed_at
    FROM w
), we AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT id, step_name, event, '{}'::jsonb, 'daemon:bench-history', at FROM timeline
    RETURNING 1
)
SELECT (SELECT count(*) FROM ws) AS steps, (SELECT count(*) FROM we) AS events
"""

_COUNTS = """
SELECT (SELECT count(*) FROM distributed_workflows) AS workflows,
       (SELECT count(*) FROM workflow_steps) AS steps,
       (SELECT count(*) FROM workflow_events) AS events,
       pg_size_pretty(pg_database_size(current_database())) AS size
"""


def history_names(template: str) -> list[tuple[str, int]]:
    """The names the history is spread over, with cumulative shares (percent)."""
    names, bound = [], 0
    for name, share in HISTORY_NAMES:
        bound += share
        names.append((name or template, bound))
    names.append((LAST_NAME, 101))  # pick < 1.0, so * 100 < 101 always
    return names


async def fill_finished_workflows(
    dsn: str,
    total: int,
    *,
    template: str,
    now: datetime,
    chunk: int = 50_000,
    report: Callable[[str], None] = print,
) -> dict[str, int | str]:
    """``total`` finished workflows with their steps and events, then ANALYZE; returns
    the tables' row counts and the database's size."""
    names = history_names(template)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_DEFINITION_VARIANTS, template, [n for n, _ in names[1:]])
        found = {
            r["workflow_name"]: r for r in await conn.fetch(_DEFINITIONS, [n for n, _ in names])
        }
        missing = [n for n, _ in names if n not in found]
        if missing:
            raise SystemExit(f"no definition named {missing[0]!r} to copy")
        defs = [
            {"name": n, "id": str(found[n]["id"]), "definition": json.loads(found[n]["definition"])}
            for n, _ in names
        ]
        bounds = [b for _, b in names]

        # Setup only: the rows are consistent by construction, so foreign-key checks
        # and per-row triggers (NOTIFY) are skipped (a superuser's session setting),
        # and commits need not wait for the disk. Whatever a trigger keeps up to date is
        # recounted afterwards (orch_recount_workflows, where the schema has it).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        began = time.perf_counter()
        for first in range(1, total + 1, chunk):
            last = min(total, first + chunk - 1)
            await conn.fetchrow(_FILL_CHUNK, first, last, total, now, json.dumps(defs), bounds)
            elapsed = time.perf_counter() - began
            rate = last / elapsed
            report(
                f"  filled {last:>9,} of {total:,} workflows ({elapsed:5.0f} s, "
                f"{rate:,.0f}/s, ~{(total - last) / rate:.0f} s to go)"
            )
        await conn.execute("RESET session_replication_role")
        if await conn.fetchval("SELECT to_regproc('orch_recount_workflows')") is not None:
            await conn.execute("SELECT orch_recount_workflows()")
        report("  ANALYZE (and VACUUM: visibility map for index-only scans) ...")
        for table in ("distributed_workflows", "workflow_steps", "workflow_events"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        await conn.execute("CHECKPOINT")
        counts = dict(await conn.fetchrow(_COUNTS) or {})
    finally:
        await conn.close()
    return counts

-- A year of history: what the console and the daemons read stays cheap however many
-- finished workflows the database holds (bench/saga_scale.py fills 1,000,000).
--
-- 1. Workflows by status, counted as they change. The Overview and the Workflows pane
--    showed count(*) ... GROUP BY current_status, a full scan of distributed_workflows
--    on every refresh of every console (72 ms at a million rows, growing with history).
--    Exact counts kept by a trigger instead of estimates (pg_class and the column's
--    statistics): the terminal counts are what an on-call engineer watches grow (failed,
--    compensation_failed: needs a person), and estimates move only when ANALYZE runs.
--    A single row a status would be a lock every starting and finishing saga of every
--    daemon queues on until its commit; the counts are spread over shards instead, one
--    chosen by the writing backend (pg_backend_pid() % 16), so concurrent writers
--    rarely meet, and a reader sums at most 16 rows a status. A shard's count may go
--    negative (a workflow started on one connection and finished on another); only
--    the sums mean anything.
-- 2. The list of workflows, newest first, pages by an index: (started_at, id) for every
--    workflow, and the same order per status and among the active ones (not ended), so
--    a page of any quick filter is read in order without sorting what matched.
-- 3. idx_workflow_steps_status goes: no statement reads steps by status alone, and each
--    index is written on every step's status change.
--
-- Locking: CREATE INDEX and CREATE TRIGGER inside the migration's transaction (the runner
-- applies each migration in one) hold a SHARE / SHARE ROW EXCLUSIVE lock on
-- distributed_workflows until it commits: reads go on, starting and driving sagas wait.
-- Measured on a million finished workflows on the benchmark machine: see
-- docs/BENCHMARKS.md (a few seconds an index). A database with a large history can build
-- the indexes beforehand without blocking writers, under the same names:
--     CREATE INDEX CONCURRENTLY idx_distributed_workflows_listing
--         ON distributed_workflows (started_at DESC, id DESC);
--     CREATE INDEX CONCURRENTLY idx_distributed_workflows_status_listing
--         ON distributed_workflows (current_status, started_at DESC, id DESC);
--     CREATE INDEX CONCURRENTLY idx_distributed_workflows_active
--         ON distributed_workflows (started_at DESC, id DESC)
--         WHERE current_status IN ('pending', 'running', 'retrying', 'paused', 'compensating');
-- and this migration then finds them (IF NOT EXISTS); the count by status (one scan,
-- under the trigger's lock so no change slips between the count and the trigger) is
-- the part that always waits.

CREATE TABLE workflow_status_counts (
    current_status TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (current_status, shard)
);

-- Moves a workflow from its old status's count to its new one's, in one statement with
-- the rows in a fixed order (two writers moving opposite ways lock them alike).
CREATE FUNCTION orch_count_workflow_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_status TEXT;
    new_status TEXT;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_status := OLD.current_status; END IF;
    IF TG_OP <> 'DELETE' THEN new_status := NEW.current_status; END IF;
    INSERT INTO workflow_status_counts AS c (current_status, shard, n)
    SELECT s, pg_backend_pid() % 16, d
    FROM (VALUES (old_status, -1), (new_status, 1)) AS v(s, d)
    WHERE s IS NOT NULL
    ORDER BY s
    ON CONFLICT (current_status, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$;

CREATE TRIGGER distributed_workflows_count_insert AFTER INSERT ON distributed_workflows
    FOR EACH ROW EXECUTE FUNCTION orch_count_workflow_status();
CREATE TRIGGER distributed_workflows_count_update AFTER UPDATE OF current_status
    ON distributed_workflows
    FOR EACH ROW WHEN (OLD.current_status IS DISTINCT FROM NEW.current_status)
    EXECUTE FUNCTION orch_count_workflow_status();
CREATE TRIGGER distributed_workflows_count_delete AFTER DELETE ON distributed_workflows
    FOR EACH ROW EXECUTE FUNCTION orch_count_workflow_status();

-- The counts taken again from the rows, with writers held off meanwhile: what this
-- migration does once, and what a bulk load that skipped triggers
-- (session_replication_role = replica) does after it.
CREATE FUNCTION orch_recount_workflows() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE distributed_workflows IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM workflow_status_counts;
    INSERT INTO workflow_status_counts (current_status, shard, n)
    SELECT current_status, 0, count(*) FROM distributed_workflows GROUP BY current_status;
END $$;

SELECT orch_recount_workflows();

CREATE INDEX IF NOT EXISTS idx_distributed_workflows_listing
    ON distributed_workflows (started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_distributed_workflows_status_listing
    ON distributed_workflows (current_status, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_distributed_workflows_active
    ON distributed_workflows (started_at DESC, id DESC)
    WHERE current_status IN ('pending', 'running', 'retrying', 'paused', 'compensating');
-- Served by the two listing indexes above (the leading columns of each).
DROP INDEX IF EXISTS idx_distributed_workflows_started;
DROP INDEX IF EXISTS idx_distributed_workflows_status;
DROP INDEX IF EXISTS idx_workflow_steps_status;

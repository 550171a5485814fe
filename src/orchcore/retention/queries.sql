-- Named queries of history retention (orchcore/retention/history.py). Each removal takes
-- at most $2 rows older than $1, oldest first, by the time index 0001/0010 gave its table,
-- so one batch holds its locks briefly and a year of backlog goes a batch at a time.

-- name: try_retention_lock
-- One daemon at a time prunes a table: a transaction-level advisory lock, let go at commit
-- (a daemon that dies mid-batch holds nothing). Two 32-bit keys: (orch's retention, table).
SELECT pg_try_advisory_xact_lock($1::int, $2::int)

-- name: prune_service_events
-- Call events recorded before $1: recorded → removed.
DELETE FROM service_events WHERE id IN (
    SELECT id FROM service_events WHERE created_at < $1 ORDER BY created_at LIMIT $2)

-- name: prune_workflow_events
-- Timeline events of workflows that finished (status in $3) before $1: a workflow's
-- timeline goes whole, never while it runs or waits for a person.
DELETE FROM workflow_events WHERE id IN (
    SELECT e.id FROM workflow_events e
    JOIN distributed_workflows w ON w.id = e.workflow_id
    WHERE e.occurred_at < $1 AND w.completed_at < $1 AND w.current_status = ANY($3::text[])
    ORDER BY e.occurred_at LIMIT $2)

-- name: prune_breaker_transitions
-- Breaker state changes before $1 (the breaker's row keeps its current state).
DELETE FROM circuit_breaker_transitions WHERE id IN (
    SELECT id FROM circuit_breaker_transitions WHERE occurred_at < $1
    ORDER BY occurred_at LIMIT $2)

-- name: prune_audit_log
-- Operator actions recorded before $1.
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)

-- History retention: the daemons remove old rows of the history tables in batches,
-- oldest first (orchcore/retention). Each batch finds its rows by time, so each table
-- needs an index on that time. service_events has one since 0001
-- (idx_service_events_created_at); these are the other three.
--
-- Locking: a plain CREATE INDEX holds a SHARE lock on its table while it builds: reads go
-- on, writes to that table wait (for workflow_events, every saga's progress). On a new or
-- small database that is milliseconds; on tens of millions of rows it can be minutes.
-- The migration runner applies each migration inside a transaction, where PostgreSQL
-- refuses CREATE INDEX CONCURRENTLY, so it cannot build them without that lock. A
-- database with a large history can build them beforehand without blocking writers, with
-- the same names, for example
--     CREATE INDEX CONCURRENTLY idx_workflow_events_occurred_at ON workflow_events(occurred_at);
-- and this migration then finds them there (IF NOT EXISTS) and only records itself.

CREATE INDEX IF NOT EXISTS idx_workflow_events_occurred_at
    ON workflow_events(occurred_at);
CREATE INDEX IF NOT EXISTS idx_circuit_breaker_transitions_occurred_at
    ON circuit_breaker_transitions(occurred_at);
CREATE INDEX IF NOT EXISTS idx_audit_log_occurred_at
    ON audit_log(occurred_at);

-- Named queries of the migration runner; the migrations themselves are migrations/*.sql.

-- name: take_migration_lock
-- Session-level, so it spans each migration's own transaction; released below.
SELECT pg_advisory_lock($1)

-- name: release_migration_lock
SELECT pg_advisory_unlock($1)

-- name: create_migration_ledger
CREATE TABLE IF NOT EXISTS orch_schema_migrations (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- name: migration_ledger_exists
SELECT to_regclass('orch_schema_migrations') IS NOT NULL

-- name: applied_migrations
SELECT version, checksum FROM orch_schema_migrations

-- name: record_migration
-- A migration: pending → applied, in the transaction that ran it.
INSERT INTO orch_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)

-- name: probe_connection
-- Is this connection still alive? (The listener asks now and then: a connection can die
-- without a word.)
SELECT 1

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

-- name: migration_in_progress
-- Does a process of this database hold the migration lock? (A one-key advisory lock shows
-- its key's high and low 32 bits as classid and objid, and objsubid 1.)
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (classid::bigint << 32 | objid::bigint) = $1)

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

-- name: create_pgmq_ledger
-- One row: which PGMQ this database runs (migrate.install_pgmq).
CREATE TABLE IF NOT EXISTS orch_pgmq (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('extension', 'sql', 'found')),
    installed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- name: pgmq_ledger_exists
SELECT to_regclass('orch_pgmq') IS NOT NULL

-- name: recorded_pgmq
SELECT version, source, installed_at, updated_at FROM orch_pgmq

-- name: record_pgmq
-- PGMQ: absent → installed (or a new version after ALTER EXTENSION ... UPDATE).
INSERT INTO orch_pgmq (version, source) VALUES ($1, $2)
ON CONFLICT (singleton) DO UPDATE
SET version = EXCLUDED.version, source = EXCLUDED.source, updated_at = now()

-- name: pgmq_extension_version
SELECT extversion FROM pg_extension WHERE extname = 'pgmq'

-- name: pgmq_extension_available
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq')

-- name: pgmq_schema_present
-- A SQL build of PGMQ that someone installed before orch came.
SELECT to_regclass('pgmq.meta') IS NOT NULL

-- name: create_pgmq_extension
CREATE EXTENSION IF NOT EXISTS pgmq

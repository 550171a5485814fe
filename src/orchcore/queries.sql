-- Named queries of the engine's top-level modules: alerts (alerts.py) and daemon
-- membership (membership.py). Time always comes in as a parameter (the engine's clock),
-- never from now(). A comment inside a block is sent with its query, so sections are not
-- marked between blocks.

-- name: list_alerts
-- Newest first; $1 open only, $2/$3 one subject (either may be null), $4 at most.
SELECT * FROM alerts
WHERE ($1::boolean = false OR resolved_at IS NULL)
  AND ($2::text IS NULL OR subject_kind = $2) AND ($3::text IS NULL OR subject_id = $3)
ORDER BY raised_at DESC LIMIT $4

-- name: open_alert_count
SELECT count(*) FROM alerts WHERE resolved_at IS NULL

-- name: acknowledge_alert
-- An alert: unacknowledged → acknowledged by $3 at $2; no row if already acknowledged.
UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3
WHERE id = $1 AND acknowledged_at IS NULL
RETURNING *

-- name: resolve_alert
-- An alert: open → resolved by $3 at $2; no row if already resolved.
UPDATE alerts SET resolved_at = $2, resolved_by = $3
WHERE id = $1 AND resolved_at IS NULL
RETURNING *

-- name: join_daemon
-- A daemon: absent → running; its start is its first heartbeat.
INSERT INTO orch_daemons (id, daemon_name, hostname, pid, listen, version, started_at,
                          heartbeat_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)

-- name: daemon_heartbeat
-- A running daemon: heard from at $2.
UPDATE orch_daemons SET heartbeat_at = $2 WHERE id = $1

-- name: leave_daemon
-- A daemon: running → stopped at $2.
UPDATE orch_daemons SET stopped_at = $2, heartbeat_at = $2 WHERE id = $1

-- name: list_daemons
-- Running daemons and those stopped after $2; alive: running and heard from after $1.
SELECT *, (stopped_at IS NULL AND heartbeat_at > $1) AS alive FROM orch_daemons
WHERE stopped_at IS NULL OR stopped_at > $2
ORDER BY started_at

-- name: server_now
-- The database server's clock, which every daemon's clock is calibrated against.
SELECT now()

-- name: ping
SELECT 1

-- name: record_action
-- Who did what to which target, and why (audit.py): written in the action's transaction.
INSERT INTO audit_log (actor, action, target_kind, target_id, reason, details, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: recent_actions
SELECT * FROM audit_log
WHERE ($1::text IS NULL OR target_kind = $1) AND ($2::text IS NULL OR target_id = $2)
ORDER BY occurred_at DESC, id DESC
LIMIT $3

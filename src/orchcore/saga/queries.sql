-- Named queries of the saga engine. Times come in as parameters (the engine's clock).

-- name: insert_definition
INSERT INTO workflow_definitions (workflow_name, workflow_version, definition, created_by, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workflow_name, workflow_version) DO NOTHING
RETURNING *

-- name: definition_by_version
SELECT * FROM workflow_definitions WHERE workflow_name = $1 AND workflow_version = $2

-- name: latest_definition
SELECT * FROM workflow_definitions WHERE workflow_name = $1
ORDER BY created_at DESC, workflow_version DESC LIMIT 1

-- name: all_definitions
SELECT d.*, (SELECT count(*) FROM distributed_workflows w WHERE w.definition_id = d.id) AS runs
FROM workflow_definitions d ORDER BY workflow_name, created_at DESC

-- name: start_workflow
-- One statement: the workflow, its steps and the 'started' event, or nothing when
-- the correlation id is taken (the caller then reads the existing workflow).
WITH w AS (
    INSERT INTO distributed_workflows (
        id, workflow_name, workflow_version, workflow_definition, definition_id,
        correlation_id, wedding_id, initiating_service, current_status, current_step,
        total_steps, context_data, started_at, timeout_at, next_run_at, lease_owner,
        lease_until, trace_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $12, $14, $15, $16, $12, $12)
    ON CONFLICT (correlation_id) DO NOTHING
    RETURNING id
), s AS (
    INSERT INTO workflow_steps (workflow_id, step_name, step_type, step_order, service_name,
        service_endpoint, status, max_retries, timeout_seconds, compensation_action,
        parent_step, branch_name, step_definition, started_at, created_at, updated_at)
    SELECT w.id, x.step_name, x.step_type, x.step_order, x.service_name, x.service_endpoint,
           x.status, x.max_retries, x.timeout_seconds, x.compensation_action, x.parent_step,
           x.branch_name, x.step_definition, x.started_at, $12, $12
    FROM w, jsonb_to_recordset($17::jsonb) AS x(
        step_name text, step_type text, step_order int, service_name text,
        service_endpoint text, status text, max_retries int, timeout_seconds int,
        compensation_action jsonb, parent_step text, branch_name text, step_definition jsonb,
        started_at timestamptz)
    RETURNING 1
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT w.id, x.step_name, x.event, x.details, x.actor, x.occurred_at
    FROM w, jsonb_to_recordset($18::jsonb) AS x(
        step_name text, event text, details jsonb, actor text, occurred_at timestamptz)
    RETURNING 1
)
SELECT id FROM w

-- name: workflow_by_correlation
SELECT id, current_status, correlation_id, workflow_definition FROM distributed_workflows
WHERE correlation_id = $1

-- name: claim_workflows
WITH due AS (
    SELECT id FROM distributed_workflows
    WHERE current_status IN ('pending', 'running', 'retrying', 'compensating')
      AND next_run_at <= $1
      AND (lease_until IS NULL OR lease_until < $1)
    ORDER BY next_run_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE distributed_workflows w SET
        lease_owner = $2,
        lease_until = $1 + make_interval(secs => $4),
        current_status = CASE WHEN w.current_status = 'pending' THEN 'running'
                              ELSE w.current_status END,
        revision = w.revision + 1,
        updated_at = $1
    FROM due WHERE w.id = due.id
    RETURNING w.*
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT id, NULL, 'claimed', jsonb_build_object('daemon', $2::text), $5, $1 FROM claimed
    RETURNING 1
)
SELECT c.*, (SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]'::jsonb)
             FROM workflow_steps s WHERE s.workflow_id = c.id) AS steps
FROM claimed c

-- name: commit_progress
-- Everything a drive changed, in one statement: the workflow row (guarded by the lease
-- and the revision read), the changed steps, new timeline events, raised alerts, and
-- the workflow's open alerts resolved when it got compensated.
WITH w AS (
    UPDATE distributed_workflows SET
        current_status = $3, phase = $4, current_step = $5, context_data = $6,
        compensation_stack = $7, error_details = $8, completed_at = $9, next_run_at = $10,
        lease_owner = $11, lease_until = $12, updated_at = $13, revision = revision + 1
    WHERE id = $1 AND revision = $2 AND lease_owner = $14
    RETURNING id, revision
), s AS (
    UPDATE workflow_steps ws SET
        status = x.status, retry_count = x.retry_count, input_data = x.input_data,
        output_data = x.output_data, error_message = x.error_message,
        started_at = x.started_at, completed_at = x.completed_at,
        next_attempt_at = x.next_attempt_at, completion_seq = x.completion_seq,
        idempotency_key = x.idempotency_key, compensation_status = x.compensation_status,
        compensation_attempts = x.compensation_attempts,
        compensation_error = x.compensation_error,
        compensation_next_attempt_at = x.compensation_next_attempt_at,
        compensated_at = x.compensated_at, updated_at = $13
    FROM jsonb_to_recordset($15::jsonb) AS x(
        step_name text, status text, retry_count int, input_data jsonb, output_data jsonb,
        error_message text, started_at timestamptz, completed_at timestamptz,
        next_attempt_at timestamptz, completion_seq int, idempotency_key text,
        compensation_status text, compensation_attempts int, compensation_error text,
        compensation_next_attempt_at timestamptz, compensated_at timestamptz)
    WHERE ws.workflow_id = $1 AND ws.step_name = x.step_name AND EXISTS (SELECT 1 FROM w)
    RETURNING 1
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT $1, x.step_name, x.event, x.details, x.actor, x.occurred_at
    FROM jsonb_to_recordset($16::jsonb) AS x(
        step_name text, event text, details jsonb, actor text, occurred_at timestamptz)
    WHERE EXISTS (SELECT 1 FROM w)
    RETURNING 1
), a AS (
    INSERT INTO alerts (kind, severity, subject_kind, subject_id, title, details, raised_at)
    SELECT x.kind, x.severity, 'workflow', $1::text, x.title, x.details, $13
    FROM jsonb_to_recordset($17::jsonb) AS x(kind text, severity text, title text, details jsonb)
    WHERE EXISTS (SELECT 1 FROM w)
    RETURNING 1
), r AS (
    UPDATE alerts SET resolved_at = $13, resolved_by = $18
    WHERE $3 IN ('compensated', 'completed') AND subject_kind = 'workflow'
      AND subject_id = $1::text AND resolved_at IS NULL AND EXISTS (SELECT 1 FROM w)
    RETURNING 1
)
SELECT (SELECT revision FROM w) AS revision

-- name: workflow_control_fields
SELECT current_status, phase, paused_from, compensation_request, completed_at, next_run_at,
       revision, lease_owner, lease_until
FROM distributed_workflows WHERE id = $1

-- name: extend_leases
UPDATE distributed_workflows SET lease_until = $3
WHERE lease_owner = $1 AND id = ANY($2::uuid[])

-- name: release_leases
UPDATE distributed_workflows SET lease_owner = NULL, lease_until = NULL,
    next_run_at = LEAST(coalesce(next_run_at, $2), $2)
WHERE lease_owner = $1

-- name: workflow_row
SELECT * FROM distributed_workflows WHERE id = $1

-- name: lock_workflow
SELECT * FROM distributed_workflows WHERE id = $1 FOR UPDATE

-- name: steps_of
SELECT * FROM workflow_steps WHERE workflow_id = $1 ORDER BY step_order, created_at, step_name

-- name: timeline_of
SELECT * FROM workflow_events WHERE workflow_id = $1 ORDER BY id

-- name: operator_update_workflow
UPDATE distributed_workflows SET
    current_status = $2, phase = $3, paused_from = $4, compensation_request = $5,
    completed_at = $6, next_run_at = $7, error_details = $8, current_step = $9,
    context_data = $10, updated_at = $11, revision = revision + 1
WHERE id = $1
RETURNING *

-- name: operator_update_step
UPDATE workflow_steps SET status = $3, retry_count = $4, output_data = $5, error_message = $6,
    next_attempt_at = $7, compensation_status = $8, compensation_attempts = $9,
    compensation_error = $10, compensation_next_attempt_at = $11, compensated_at = $12,
    completed_at = $13, completion_seq = $14, updated_at = $15
WHERE workflow_id = $1 AND step_name = $2

-- name: insert_event
INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: list_workflows
SELECT id, workflow_name, workflow_version, correlation_id, wedding_id, initiating_service,
       current_status, current_step, total_steps, started_at, completed_at, updated_at,
       next_run_at, lease_owner, error_details, phase
FROM distributed_workflows
WHERE ($1::text[] IS NULL OR current_status = ANY($1))
  AND ($2::text IS NULL OR workflow_name = $2)
  AND ($3::uuid IS NULL OR wedding_id = $3)
  AND ($4::text IS NULL OR correlation_id = $4)
  AND ($5::timestamptz IS NULL OR started_at >= $5)
  AND ($6::timestamptz IS NULL OR started_at < $6)
ORDER BY started_at DESC, id
LIMIT $7 OFFSET $8

-- name: count_workflows
SELECT count(*) FROM distributed_workflows
WHERE ($1::text[] IS NULL OR current_status = ANY($1))
  AND ($2::text IS NULL OR workflow_name = $2)
  AND ($3::uuid IS NULL OR wedding_id = $3)
  AND ($4::text IS NULL OR correlation_id = $4)
  AND ($5::timestamptz IS NULL OR started_at >= $5)
  AND ($6::timestamptz IS NULL OR started_at < $6)

-- name: status_summary
SELECT current_status, count(*) AS n FROM distributed_workflows GROUP BY current_status

-- name: median_duration
SELECT percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM completed_at - started_at)) AS seconds
FROM (SELECT started_at, completed_at FROM distributed_workflows
      WHERE workflow_name = $1 AND current_status = 'completed'
      ORDER BY completed_at DESC LIMIT 50) recent

-- name: announce_workflows
-- What changed without notifying by itself (see migration 0005): a driver's progress,
-- coalesced, or an operator's action. ids: the workflows, or NULL for "too many to name".
SELECT pg_notify('orch', json_build_object(
    'topic', 'workflow', 'op', $1::text, 'ids', $2::uuid[], 'count', $3::int,
    'by', $4::text)::text)

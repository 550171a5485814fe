-- Named queries of the saga engine. Times come in as parameters (the engine's clock).
-- The status lists here repeat orchcore.saga.status (SQL cannot import it);
-- tests/test_saga_vocabulary.py compares them.

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

-- name: registered_service_names
SELECT service_name FROM microservices

-- name: registered_queue_names
SELECT queue_name FROM message_queues WHERE is_active

-- name: start_workflow
-- One statement: the workflow, its steps (the first one's attempt started when a runner
-- here drives it at once) and their events, or nothing when the correlation id is taken
-- (the caller then reads the existing workflow). $1: the workflow row as JSON, $2: its
-- steps, $3: its events.
WITH input AS (
    SELECT * FROM jsonb_populate_record(NULL::distributed_workflows, $1::jsonb)
), w AS (
    INSERT INTO distributed_workflows (
        id, workflow_name, workflow_version, workflow_definition, definition_id,
        correlation_id, wedding_id, initiating_service, current_status, current_step,
        total_steps, context_data, started_at, timeout_at, next_run_at, lease_owner,
        lease_until, trace_id, trace_parent_span_id, trace_sampled, created_at, updated_at)
    SELECT id, workflow_name, workflow_version, workflow_definition, definition_id,
           correlation_id, wedding_id, initiating_service, current_status, 0,
           total_steps, context_data, started_at, timeout_at, started_at, lease_owner,
           lease_until, trace_id, trace_parent_span_id, trace_sampled, started_at, started_at
    FROM input
    ON CONFLICT (correlation_id) DO NOTHING
    RETURNING id, started_at
), s AS (
    INSERT INTO workflow_steps (workflow_id, step_name, step_type, step_order, service_name,
        service_endpoint, status, started_at, idempotency_key, attempt_deadline, max_retries,
        timeout_seconds, compensation_action, parent_step, branch_name, step_definition,
        created_at, updated_at)
    SELECT w.id, x.step_name, x.step_type, x.step_order, x.service_name, x.service_endpoint,
           x.status, x.started_at, x.idempotency_key, x.attempt_deadline, x.max_retries,
           x.timeout_seconds, x.compensation_action, x.parent_step, x.branch_name,
           x.step_definition, w.started_at, w.started_at
    FROM w, jsonb_to_recordset($2::jsonb) AS x(
        step_name text, step_type text, step_order int, service_name text,
        service_endpoint text, status text, started_at timestamptz, idempotency_key text,
        attempt_deadline timestamptz, max_retries int, timeout_seconds int,
        compensation_action jsonb, parent_step text, branch_name text, step_definition jsonb)
    RETURNING 1
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT w.id, x.step_name, x.event, x.details, x.actor, x.occurred_at
    FROM w, jsonb_to_recordset($3::jsonb) AS x(
        step_name text, event text, details jsonb, actor text, occurred_at timestamptz)
    RETURNING 1
)
SELECT id FROM w

-- name: workflow_by_correlation
SELECT id, current_status, correlation_id, workflow_definition FROM distributed_workflows
WHERE correlation_id = $1

-- name: workflow_exists
SELECT 1 FROM distributed_workflows WHERE id = $1

-- name: claim_workflows
-- Due, runnable workflows whose lease is free or expired: leased to $2 for $4 seconds
-- (pending → running), each with its steps and the operator actions queued for it.
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
SELECT c.*,
       (SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]'::jsonb)
        FROM workflow_steps s WHERE s.workflow_id = c.id) AS steps,
       (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.id), '[]'::jsonb)
        FROM workflow_commands k WHERE k.workflow_id = c.id AND k.state = 'pending') AS commands
FROM claimed c

-- name: lock_workflow_whole
-- A workflow to change under an operator's hand: its row locked, its steps and the
-- operator actions still queued for it.
SELECT w.*,
       (SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]'::jsonb)
        FROM workflow_steps s WHERE s.workflow_id = w.id) AS steps,
       (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.id), '[]'::jsonb)
        FROM workflow_commands k WHERE k.workflow_id = w.id AND k.state = 'pending') AS commands
FROM distributed_workflows w WHERE w.id = $1
FOR UPDATE OF w

-- name: commit_progress
-- A drive's or an operator's changes in one statement: the workflow row ($1, JSON),
-- guarded by the revision read ($2) and the lease ($4: the holder; NULL: nobody may
-- hold a live lease), the changed steps ($5), timeline events ($6), alerts raised ($7),
-- queued operator actions settled ($8: pending → applied | refused), audit rows ($11),
-- the messages its steps publish ($12, the outbox: each sent by PGMQ and logged as
-- produced, or, for a topic, fanned out to the queues bound to its type), and the
-- workflow's open alerts resolved once it completed or got compensated. A commit that
-- got the workflow further ($9) resets its crash count. Returns the new revision, or
-- NULL when the guard failed and nothing was written (nor sent).
WITH input AS (
    SELECT * FROM jsonb_populate_record(NULL::distributed_workflows, $1::jsonb)
), w AS (
    UPDATE distributed_workflows d SET
        current_status = i.current_status, phase = i.phase, current_step = i.current_step,
        context_data = i.context_data, error_details = i.error_details,
        completed_at = i.completed_at, next_run_at = i.next_run_at,
        paused_from = i.paused_from, compensation_request = i.compensation_request,
        lease_owner = i.lease_owner, lease_until = i.lease_until, commit_id = i.commit_id,
        drive_crashes = CASE WHEN $9::boolean THEN 0 ELSE d.drive_crashes END,
        updated_at = $3, revision = d.revision + 1
    FROM input i
    WHERE d.id = i.id AND d.revision = $2
      AND (d.lease_owner = $4::text
           OR ($4::text IS NULL AND (d.lease_owner IS NULL OR d.lease_until < $3)))
    RETURNING d.id, d.revision, d.current_status
), s AS (
    UPDATE workflow_steps ws SET
        status = x.status, retry_count = x.retry_count, max_retries = x.max_retries,
        generation = x.generation, outcome_unknown = x.outcome_unknown,
        input_data = x.input_data, output_data = x.output_data,
        error_message = x.error_message, started_at = x.started_at,
        completed_at = x.completed_at, next_attempt_at = x.next_attempt_at,
        attempt_deadline = x.attempt_deadline, completion_seq = x.completion_seq,
        idempotency_key = x.idempotency_key, compensation_status = x.compensation_status,
        compensation_attempts = x.compensation_attempts,
        compensation_error = x.compensation_error,
        compensation_next_attempt_at = x.compensation_next_attempt_at,
        compensated_at = x.compensated_at, updated_at = $3
    FROM w, jsonb_to_recordset($5::jsonb) AS x(
        step_name text, status text, retry_count int, max_retries int, generation int,
        outcome_unknown boolean, input_data jsonb, output_data jsonb, error_message text,
        started_at timestamptz, completed_at timestamptz, next_attempt_at timestamptz,
        attempt_deadline timestamptz, completion_seq int, idempotency_key text,
        compensation_status text, compensation_attempts int, compensation_error text,
        compensation_next_attempt_at timestamptz, compensated_at timestamptz)
    WHERE ws.workflow_id = w.id AND ws.step_name = x.step_name
    RETURNING 1
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT w.id, x.step_name, x.event, x.details, x.actor, x.occurred_at
    FROM w, jsonb_to_recordset($6::jsonb) AS x(
        step_name text, event text, details jsonb, actor text, occurred_at timestamptz)
    RETURNING 1
), a AS (
    INSERT INTO alerts (kind, severity, subject_kind, subject_id, title, details, raised_at)
    SELECT x.kind, x.severity, 'workflow', w.id::text, x.title, x.details, $3
    FROM w, jsonb_to_recordset($7::jsonb) AS x(kind text, severity text, title text, details jsonb)
    RETURNING 1
), c AS (
    UPDATE workflow_commands k SET state = x.state, outcome = x.outcome, settled_at = $3,
        settled_by = $10
    FROM w, jsonb_to_recordset($8::jsonb) AS x(id bigint, state text, outcome text)
    WHERE k.id = x.id AND k.workflow_id = w.id AND k.state = 'pending'
    RETURNING 1
), au AS (
    INSERT INTO audit_log (actor, action, target_kind, target_id, reason, details, occurred_at)
    SELECT x.actor, x.action, 'workflow', w.id::text, x.reason, x.details, x.occurred_at
    FROM w, jsonb_to_recordset($11::jsonb) AS x(
        actor text, action text, reason text, details jsonb, occurred_at timestamptz)
    RETURNING 1
), r AS (
    UPDATE alerts SET resolved_at = $3, resolved_by = $10
    FROM w
    WHERE w.current_status IN ('compensated', 'completed') AND alerts.subject_kind = 'workflow'
      AND alerts.subject_id = w.id::text AND alerts.resolved_at IS NULL
    RETURNING 1
), outbox AS (
    -- a TTL becomes the header x-orch-expires-at, as a send's does
    SELECT x.*, orch_bus_headers_with_ttl(x.headers::jsonb, x.ttl_seconds) AS sent_headers
    FROM w, jsonb_to_recordset($12::jsonb) AS x(
        queue_name text, topic boolean, message_type text, message text, headers text,
        ttl_seconds int, delay_seconds int, correlation_id text, producer text,
        size_bytes int)
), sent AS (
    SELECT o.queue_name AS sent_to, m.msg_id, o.*
    FROM outbox o
    CROSS JOIN LATERAL pgmq.send(o.queue_name, o.message::jsonb, o.sent_headers,
                                 o.delay_seconds) AS m(msg_id)
    WHERE NOT o.topic
    UNION ALL
    SELECT t.queue_name AS sent_to, t.msg_id, o.*
    FROM outbox o
    CROSS JOIN LATERAL pgmq.send_batch_topic(o.message_type, ARRAY[o.message::jsonb],
                                             ARRAY[o.sent_headers], o.delay_seconds) AS t
    WHERE o.topic
), logged AS (
    SELECT orch_bus_log_events(jsonb_agg(jsonb_build_object(
               'queue_name', s.sent_to, 'message_id', s.msg_id::text, 'status', 'produced',
               'status_at', now(), 'producer_service', s.producer,
               'message_type', s.message_type, 'correlation_id', s.correlation_id,
               'message_size_bytes', s.size_bytes, 'produced_at', now(),
               'headers', s.sent_headers,
               'events', jsonb_build_array(jsonb_build_object('event', 'produced', 'at', now())))
           ORDER BY s.sent_to, s.msg_id::text)) AS done
    FROM sent s
    HAVING count(*) > 0
)
SELECT (SELECT revision FROM w) AS revision, (SELECT count(*) FROM logged) AS published

-- name: commit_landed
-- After a commit whose answer was lost with the connection: did it land?
SELECT revision, commit_id, lease_owner FROM distributed_workflows WHERE id = $1

-- name: workflow_guard
-- Why a commit's guard failed: who holds the workflow now, at which revision, and the
-- operator actions queued for it meanwhile.
SELECT w.lease_owner, w.lease_until, w.revision,
       (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.id), '[]'::jsonb)
        FROM workflow_commands k WHERE k.workflow_id = w.id AND k.state = 'pending') AS commands
FROM distributed_workflows w WHERE w.id = $1

-- name: queue_command
-- An operator's action on a workflow a daemon holds, for that daemon to apply at its
-- next commit; the revision moves so that commit's guard sends it to read the queue.
WITH k AS (
    INSERT INTO workflow_commands (workflow_id, action, params, actor, reason, requested_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id
), w AS (
    UPDATE distributed_workflows SET revision = revision + 1,
        next_run_at = LEAST(coalesce(next_run_at, $6), $6)
    WHERE id = $1
    RETURNING 1
)
SELECT id FROM k

-- name: insert_events
INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
SELECT $1, x.step_name, x.event, x.details, x.actor, x.occurred_at
FROM jsonb_to_recordset($2::jsonb) AS x(
    step_name text, event text, details jsonb, actor text, occurred_at timestamptz)

-- name: command_state
SELECT state, outcome, settled_at, settled_by FROM workflow_commands WHERE id = $1

-- name: note_drive_crash
-- A drive ended in an unexpected error ($4): count it and give the lease back (due again
-- after a pause that doubles each time, $6 seconds at first). At $5 crashes in a row the
-- workflow is parked for a person with an alert: running → failed, or
-- compensating → compensation_failed. Returns the crash count and the status.
WITH w AS (
    UPDATE distributed_workflows d SET
        drive_crashes = d.drive_crashes + 1,
        lease_owner = NULL, lease_until = NULL,
        next_run_at = $3::timestamptz + make_interval(secs => $6 * power(2, LEAST(d.drive_crashes, 6))),
        current_status = CASE
            WHEN d.drive_crashes + 1 < $5 THEN d.current_status
            WHEN d.phase = 'compensate' THEN 'compensation_failed'
            ELSE 'failed' END,
        completed_at = CASE WHEN d.drive_crashes + 1 < $5 THEN d.completed_at ELSE $3::timestamptz END,
        error_details = CASE WHEN d.drive_crashes + 1 < $5 THEN d.error_details
            ELSE jsonb_build_object('step_name', NULL, 'error_message', $4::text,
                                    'retry_count', d.drive_crashes + 1, 'phase', d.phase) END,
        revision = d.revision + 1, updated_at = $3::timestamptz
    WHERE d.id = $1 AND (d.lease_owner = $2::text OR $2::text IS NULL)
    RETURNING d.id, d.drive_crashes, d.current_status, d.workflow_name, d.correlation_id,
              d.drive_crashes >= $5 AS parked
), e AS (
    INSERT INTO workflow_events (workflow_id, step_name, event, details, actor, occurred_at)
    SELECT w.id, NULL, 'drive_crashed',
           jsonb_build_object('error', $4::text, 'crashes', w.drive_crashes), $7, $3
    FROM w
    UNION ALL
    SELECT w.id, NULL, 'workflow_parked',
           jsonb_build_object('reason', $4::text, 'crashes', w.drive_crashes,
                              'needs', 'manual intervention'), $7, $3
    FROM w WHERE w.parked
    RETURNING 1
), a AS (
    INSERT INTO alerts (kind, severity, subject_kind, subject_id, title, details, raised_at)
    SELECT 'workflow_parked', 'critical', 'workflow', w.id::text,
           'workflow ' || w.workflow_name || ' ' || w.correlation_id || ' parked after '
               || w.drive_crashes || ' crashed drives; needs manual intervention',
           jsonb_build_object('workflow_id', w.id, 'error', $4::text, 'crashes', w.drive_crashes),
           $3
    FROM w WHERE w.parked
    RETURNING 1
)
SELECT drive_crashes, current_status, parked FROM w

-- name: extend_leases
UPDATE distributed_workflows SET lease_until = $3
WHERE lease_owner = $1 AND id = ANY($2::uuid[])

-- name: release_leases
UPDATE distributed_workflows SET lease_owner = NULL, lease_until = NULL,
    next_run_at = LEAST(coalesce(next_run_at, $2), $2)
WHERE lease_owner = $1

-- name: workflow_row
SELECT * FROM distributed_workflows WHERE id = $1

-- name: steps_of
SELECT * FROM workflow_steps WHERE workflow_id = $1 ORDER BY step_order, created_at, step_name

-- name: timeline_of
SELECT * FROM workflow_events WHERE workflow_id = $1 ORDER BY id

-- name: pending_commands_of
SELECT * FROM workflow_commands WHERE workflow_id = $1 AND state = 'pending' ORDER BY id

-- name: list_workflows
-- Newest first, by (started_at, id): one page read in index order (the listing
-- indexes of migration 0012), after the keyset ($10, $11) of the last page's last row
-- when given (else from $8 rows in). One status comes as $12 rather than in $1: an
-- index is read in order for "= status", not for "= ANY(statuses)" (which would read
-- and sort every match, all of a year's failed ones for one page).
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
  AND ($9::uuid[] IS NULL OR id = ANY($9))
  AND ($10::timestamptz IS NULL OR (started_at, id) < ($10, $11::uuid))
  AND ($12::text IS NULL OR current_status = $12)
ORDER BY started_at DESC, id DESC
LIMIT $7 OFFSET $8

-- name: count_workflows
-- How many match, counted up to $8 rows (a filter beyond status may match most of a
-- year's history; counting it whole is a scan). Status alone is counted exactly from
-- workflow_status_counts instead (status_summary).
SELECT count(*) FROM (
    SELECT 1 FROM distributed_workflows
    WHERE ($1::text[] IS NULL OR current_status = ANY($1))
      AND ($2::text IS NULL OR workflow_name = $2)
      AND ($3::uuid IS NULL OR wedding_id = $3)
      AND ($4::text IS NULL OR correlation_id = $4)
      AND ($5::timestamptz IS NULL OR started_at >= $5)
      AND ($6::timestamptz IS NULL OR started_at < $6)
      AND ($7::uuid[] IS NULL OR id = ANY($7))
    LIMIT $8) AS capped

-- name: status_summary
-- Every workflow by status, from the counts a trigger keeps (migration 0012): the sum
-- of each status's shards, not a scan of the history.
SELECT current_status, sum(n)::bigint AS n FROM workflow_status_counts
GROUP BY current_status HAVING sum(n) <> 0

-- name: median_duration
-- The 50 newest completed runs of a name, found newest first through
-- idx_distributed_workflows_name (ordering by completed_at had no index to follow:
-- it read every completed run of the name, most of a year's history).
SELECT percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM completed_at - started_at)) AS seconds
FROM (SELECT started_at, completed_at FROM distributed_workflows
      WHERE workflow_name = $1 AND current_status = 'completed'
      ORDER BY started_at DESC LIMIT 50) recent

-- name: announce_workflows
-- What changed without notifying by itself (see migration 0005): a driver's progress,
-- coalesced, or an operator's action. ids: the workflows, or NULL for "too many to name".
SELECT pg_notify('orch', json_build_object(
    'topic', 'workflow', 'op', $1::text, 'ids', $2::uuid[], 'count', $3::int,
    'by', $4::text)::text)

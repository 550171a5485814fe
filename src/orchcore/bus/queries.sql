-- Named queries of the message bus. Messages live in PGMQ: these call PGMQ's functions
-- and orch's own orch_bus_* functions (migrations/0007_bus.sql), always with the queue
-- name as a bound parameter. Times of messages are the database's (PGMQ's vt and
-- enqueued_at are); times of registry rows and samples come in as parameters (the clock).

-- Registry ----------------------------------------------------------------------------------

-- name: insert_queue
-- A queue: absent → active. Nothing when the name is taken (active or not).
INSERT INTO message_queues (
    queue_name, queue_type, message_pattern, producer_services, consumer_services,
    retention_hours, max_message_size, dlq_enabled, dlq_max_retries, monitoring_config,
    push_endpoint, visibility_timeout_seconds, created_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
ON CONFLICT (queue_name) DO NOTHING
RETURNING *

-- name: queue_by_name
SELECT * FROM message_queues WHERE queue_name = $1

-- name: queue_by_name_for_update
SELECT * FROM message_queues WHERE queue_name = $1 FOR UPDATE

-- name: list_queues
SELECT * FROM message_queues WHERE $1::boolean OR is_active ORDER BY queue_name

-- name: update_queue
-- A queue's settings, all of them, as merged by the registry from the current row.
UPDATE message_queues
SET message_pattern = $2, producer_services = $3, consumer_services = $4,
    retention_hours = $5, max_message_size = $6, dlq_max_retries = $7,
    monitoring_config = $8, push_endpoint = $9, visibility_timeout_seconds = $10,
    updated_at = $11
WHERE queue_name = $1
RETURNING *

-- name: set_queue_active
-- A queue: active → inactive (sends refused, messages kept) or inactive → active.
UPDATE message_queues
SET is_active = $2::boolean,
    deactivated_at = CASE WHEN $2::boolean THEN NULL ELSE $3::timestamptz END,
    updated_at = $3
WHERE queue_name = $1 AND is_active <> $2
RETURNING *

-- name: create_pgmq_queue
-- Idempotent in PGMQ: an existing PGMQ queue of that name (a foreign client's) is adopted.
SELECT pgmq.create($1)

-- name: enable_queue_notify
-- Insert notifications on the queue's PGMQ channel (orch_bus_enable_notify). Also run
-- by each process that starts listening: PGMQ keeps the throttle rows in an UNLOGGED
-- table, which a crash empties, and this puts a lost one back.
SELECT orch_bus_enable_notify($1, $2)

-- name: validate_pattern
SELECT pgmq.validate_topic_pattern($1)

-- name: bind_pattern
SELECT pgmq.bind_topic($1, $2)

-- name: unbind_pattern
SELECT pgmq.unbind_topic($1, $2)

-- Sending ------------------------------------------------------------------------------------
-- $2 is the PGMQ message as JSON text, $3 the sender's headers as JSON text (or NULL),
-- $4 the TTL in seconds (or NULL), $5 the delay in seconds. The TTL becomes the header
-- x-orch-expires-at (orch_bus_headers_with_ttl).

-- name: send_topic_batch
-- Fan-out: every bound queue whose pattern matches the routing key ($1, the message
-- type) gets each message; one (queue, id) row per copy.
SELECT queue_name, msg_id
FROM pgmq.send_batch_topic(
    $1::text,
    $2::text[]::jsonb[],
    (SELECT array_agg(orch_bus_headers_with_ttl(h.headers::jsonb, h.ttl) ORDER BY h.ord)
     FROM unnest($3::text[], $4::integer[]) WITH ORDINALITY AS h(headers, ttl, ord)),
    $5::integer)
ORDER BY queue_name, msg_id

-- Prepared per queue (orchcore.bus.direct) ---------------------------------------------------
-- PGMQ's own statements (those pgmq.send, pgmq.send_batch, pgmq.read and pgmq.delete
-- build with format() and EXECUTE), on the table {queue_table} (pgmq."q_<name>"), run as
-- statements prepared once per connection instead of planned on every call.

-- name: direct_send
-- $1 the PGMQ message as JSON text, $2 the sender's headers as JSON text (or NULL), $3
-- the TTL in seconds (or NULL: the headers go as they are), $4 the delay in seconds.
INSERT INTO {queue_table} (vt, message, headers)
VALUES (clock_timestamp() + make_interval(secs => $4::integer), $1::text::jsonb,
        CASE WHEN $3::integer IS NULL THEN $2::text::jsonb
             ELSE orch_bus_headers_with_ttl($2::text::jsonb, $3::integer) END)
RETURNING msg_id

-- name: direct_send_batch
-- The same for several messages of one delay ($4), one array a column ($2 or $3 NULL
-- when all of theirs are: unnest pads it); ids come back in the order given.
WITH sent AS (
    INSERT INTO {queue_table} (vt, message, headers)
    SELECT clock_timestamp() + make_interval(secs => $4::integer), m.message::jsonb,
           CASE WHEN m.ttl IS NULL THEN m.headers::jsonb
                ELSE orch_bus_headers_with_ttl(m.headers::jsonb, m.ttl) END
    FROM unnest($1::text[], $2::text[], $3::integer[]) WITH ORDINALITY AS m(message, headers, ttl, ord)
    ORDER BY m.ord
    RETURNING msg_id
)
SELECT msg_id FROM sent ORDER BY msg_id

-- name: direct_read
-- ready → in flight: up to $1 messages, oldest first, invisible for $2 seconds, read
-- count + 1 (pgmq.read). What is past its TTL or its delivery limit is set aside
-- afterwards (orch_bus_set_aside).
WITH due AS (
    SELECT msg_id FROM {queue_table}
    WHERE vt <= clock_timestamp()
    ORDER BY msg_id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE {queue_table} m
SET last_read_at = clock_timestamp(),
    vt = clock_timestamp() + make_interval(secs => $2::integer),
    read_ct = m.read_ct + 1
FROM due
WHERE m.msg_id = due.msg_id
RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers

-- name: direct_ack_one
-- in flight → gone (pgmq.delete), for a message received in this process: its facts are
-- known (orchcore.bus.deliveries), so only the time and size come back
-- (pg_column_size reads a value's header, not the value).
DELETE FROM {queue_table} WHERE msg_id = $1::bigint
RETURNING msg_id, clock_timestamp() AS acked_at, pg_column_size(message) AS size_bytes

-- name: direct_ack_many
DELETE FROM {queue_table} WHERE msg_id = ANY($1::bigint[])
RETURNING msg_id, clock_timestamp() AS acked_at, pg_column_size(message) AS size_bytes

-- Delivery -----------------------------------------------------------------------------------

-- name: set_aside
-- in flight → expired (past its TTL), or → dead letter (or archived as failed without
-- one) over its delivery limit, for messages a direct read may have found due; returns
-- the ids set aside.
SELECT msg_id FROM orch_bus_set_aside($1, $2::bigint[], $3, $4, $5) AS msg_id

-- name: next_visible_in
SELECT orch_bus_next_visible_in($1)

-- name: ack
-- in flight → gone (deleted); the message log keeps the record.
SELECT * FROM orch_bus_ack($1, $2::bigint[])

-- name: nack
-- in flight → ready after the delay, or → dead letter when that was its last delivery.
SELECT outcome, read_ct, message, headers, enqueued_at, last_read_at, clock_timestamp() AS at
FROM orch_bus_nack($1, $2, $3, $4, $5, $6, $7)

-- name: extend
-- in flight → in flight for $3 more seconds from now.
SELECT msg_id FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)

-- name: hand_back
-- in flight → ready after $3 seconds, the read not counted (orch_bus_hand_back).
SELECT * FROM orch_bus_hand_back($1, $2, $3)

-- name: dead_letter_now
-- any → dead letter at once (a push answered 4xx).
SELECT orch_bus_dead_letter($1, $2, $3, $4, $5)

-- Logs ---------------------------------------------------------------------------------------

-- name: log_rows
-- A batch of lifecycle records, one array a column (orchcore.bus.logs.COLUMNS).
SELECT orch_bus_log_rows($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                         $16, $17, $18, $19)

-- name: recent_messages
SELECT * FROM message_logs WHERE queue_name = $1
ORDER BY produced_at DESC, length(message_id) DESC, message_id DESC
LIMIT $2

-- Dead letters -------------------------------------------------------------------------------

-- name: peek
-- $3: newest first (else oldest first).
SELECT *, vt > clock_timestamp() AS invisible, pg_column_size(message) AS size_bytes
FROM orch_bus_peek($1, $2, $3)

-- name: redrive
-- dead letter → a new message of the original queue (read count 0).
SELECT dead_letter_id, message_id FROM orch_bus_redrive($1, $2::bigint[], $3)

-- name: purge_dead_letters
-- dead letter → gone.
SELECT msg_id FROM orch_bus_purge_dead_letters($1, $2) AS msg_id

-- name: purge_queue
-- every message of the queue (ready, in flight, delayed) → gone.
SELECT pgmq.purge_queue($1)

-- Depth, rates, retention --------------------------------------------------------------------

-- name: queue_depths
-- Every active queue's depth (topics have none of their own), or the one named $2, with
-- the oldest sample of the last minute (for the rates) and the running totals. $1: now.
SELECT q.queue_name, q.dlq_enabled, d.total, d.ready, d.in_flight, d.delayed,
       d.oldest_age_seconds, d.average_age_seconds, d.sent_total,
       coalesce(dl.total, 0) AS dead_letters,
       coalesce(c.acked, 0)::bigint AS acked_total,
       s.sampled_at AS base_sampled_at, s.sent_total AS base_sent_total,
       s.acked_total AS base_acked_total
FROM message_queues q
CROSS JOIN LATERAL orch_bus_depth(q.queue_name) d
LEFT JOIN LATERAL orch_bus_depth(q.queue_name || '_dlq') dl ON q.dlq_enabled
LEFT JOIN bus_queue_totals c ON c.queue_name = q.queue_name
LEFT JOIN LATERAL (
    SELECT sampled_at, sent_total, acked_total FROM bus_depth_samples b
    WHERE b.queue_name = q.queue_name AND b.sampled_at >= $1::timestamptz - interval '60 seconds'
    ORDER BY b.sampled_at LIMIT 1
) s ON true
WHERE q.queue_type <> 'topic'
  AND (($2::text IS NULL AND q.is_active) OR q.queue_name = $2)
ORDER BY q.queue_name

-- name: insert_depth_samples
-- One sample per active queue at $1, unless another daemon sampled it less than $2
-- seconds ago.
INSERT INTO bus_depth_samples (
    queue_name, sampled_at, ready, in_flight, delayed, dead_letters, sent_total, acked_total)
SELECT q.queue_name, $1, d.ready, d.in_flight, d.delayed, coalesce(dl.total, 0),
       d.sent_total, coalesce(c.acked, 0)
FROM message_queues q
CROSS JOIN LATERAL orch_bus_depth(q.queue_name) d
LEFT JOIN LATERAL orch_bus_depth(q.queue_name || '_dlq') dl ON q.dlq_enabled
LEFT JOIN bus_queue_totals c ON c.queue_name = q.queue_name
WHERE q.is_active AND q.queue_type <> 'topic'
  AND NOT EXISTS (
      SELECT 1 FROM bus_depth_samples b
      WHERE b.queue_name = q.queue_name
        AND b.sampled_at > $1::timestamptz - make_interval(secs => $2::double precision))
ON CONFLICT (queue_name, sampled_at) DO NOTHING

-- name: depth_history
SELECT * FROM bus_depth_samples WHERE queue_name = $1 AND sampled_at >= $2
ORDER BY sampled_at

-- name: retention_targets
SELECT queue_name, queue_type, retention_hours FROM message_queues ORDER BY queue_name

-- name: expire_due
SELECT orch_bus_expire_due($1, $2)

-- name: trim_archive
SELECT orch_bus_trim_archive($1, now() - make_interval(hours => $2), $3)

-- name: trim_message_logs
DELETE FROM message_logs WHERE id IN (
    SELECT id FROM message_logs
    WHERE queue_name = $1 AND produced_at < now() - make_interval(hours => $2)
    LIMIT $3 FOR UPDATE SKIP LOCKED)

-- name: trim_depth_samples
DELETE FROM bus_depth_samples WHERE (queue_name, sampled_at) IN (
    SELECT queue_name, sampled_at FROM bus_depth_samples WHERE sampled_at < $1
    LIMIT $2 FOR UPDATE SKIP LOCKED)

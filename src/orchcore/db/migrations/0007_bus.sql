-- The message bus on PGMQ (orchcore.bus). PGMQ itself is installed by migrate() before
-- this file runs; each orch queue is a PGMQ queue of the same name, its dead letters the
-- PGMQ queue <name>_dlq. What PGMQ lacks lives here: the registry's extra columns,
-- message logs keyed by queue, counters, depth samples, and the functions that move a
-- message in one statement (dead-lettering, expiry, redrive) so no step is ever half done.
-- docs/BUS.md is the contract a foreign PGMQ client keeps.

-- Registry ----------------------------------------------------------------------------------

ALTER TABLE message_queues
    ADD COLUMN push_endpoint TEXT,
    ADD COLUMN visibility_timeout_seconds INTEGER NOT NULL DEFAULT 30
        CHECK (visibility_timeout_seconds > 0),
    ADD COLUMN created_by TEXT,
    ADD COLUMN deactivated_at TIMESTAMPTZ,
    ADD CONSTRAINT message_queues_type_check
        CHECK (queue_type IN ('queue', 'topic', 'dead_letter')),
    ADD CONSTRAINT message_queues_name_check
        CHECK (queue_name ~ '^[a-z][a-z0-9_]{0,42}$' AND queue_name NOT LIKE '%\_dlq');

ALTER TABLE message_queues
    ALTER COLUMN producer_services SET NOT NULL,
    ALTER COLUMN consumer_services SET NOT NULL,
    ALTER COLUMN retention_hours SET NOT NULL,
    ALTER COLUMN max_message_size SET NOT NULL,
    ALTER COLUMN dlq_enabled SET NOT NULL,
    ALTER COLUMN dlq_max_retries SET NOT NULL,
    ALTER COLUMN monitoring_config SET NOT NULL,
    ALTER COLUMN is_active SET NOT NULL,
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN updated_at SET NOT NULL;

-- Every process caches queue settings on the send path; this keeps the caches fresh.
CREATE FUNCTION orch_notify_message_queue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data message_queues;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'message_queue', 'op', lower(TG_OP), 'queue_name', row_data.queue_name)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER message_queues_notify AFTER INSERT OR UPDATE OR DELETE ON message_queues
    FOR EACH ROW EXECUTE FUNCTION orch_notify_message_queue();

-- Message logs: one row per (queue, message), its status the latest event ----------------
-- PGMQ's msg_id is unique per queue only, so the seed's UNIQUE (message_id) becomes
-- UNIQUE (queue_name, message_id). ``events`` keeps every lifecycle event with its time.

ALTER TABLE message_logs DROP CONSTRAINT message_logs_message_id_key;
ALTER TABLE message_logs ADD CONSTRAINT message_logs_queue_message_key
    UNIQUE (queue_name, message_id);
ALTER TABLE message_logs
    ADD COLUMN message_size_bytes INTEGER,
    ADD COLUMN delivered_at TIMESTAMPTZ,
    ADD COLUMN status_at TIMESTAMPTZ,
    ADD COLUMN events JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD CONSTRAINT message_logs_status_check CHECK (status IN (
        'produced', 'delivered', 'acked', 'failed', 'dead_lettered', 'expired', 'redriven',
        'purged'));
-- Listing a queue's recent messages and retention both walk (queue, produced_at); the
-- seed's (queue, status) index would be rewritten on every status change for no reader.
DROP INDEX idx_message_logs_queue_status;
CREATE INDEX idx_message_logs_queue_produced ON message_logs (queue_name, produced_at DESC);

-- Running totals of what left each queue, one row per queue and writing process (so two
-- processes never queue up on one row); a total is the sum over writers. Messages in
-- are counted by PGMQ's own msg_id sequence.
CREATE TABLE bus_queue_counters (
    queue_name TEXT NOT NULL,
    writer TEXT NOT NULL,
    acked BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    dead_lettered BIGINT NOT NULL DEFAULT 0,
    expired BIGINT NOT NULL DEFAULT 0,
    redriven BIGINT NOT NULL DEFAULT 0,
    purged BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_name, writer)
);

CREATE VIEW bus_queue_totals AS
SELECT queue_name, sum(acked)::bigint AS acked, sum(failed)::bigint AS failed,
       sum(dead_lettered)::bigint AS dead_lettered, sum(expired)::bigint AS expired,
       sum(redriven)::bigint AS redriven, sum(purged)::bigint AS purged
FROM bus_queue_counters GROUP BY queue_name;

-- Depth of each queue every few seconds (sampled by the daemons), for the console's chart.
CREATE TABLE bus_depth_samples (
    queue_name TEXT NOT NULL,
    sampled_at TIMESTAMPTZ NOT NULL,
    ready INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    delayed INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    sent_total BIGINT NOT NULL,
    acked_total BIGINT NOT NULL,
    PRIMARY KEY (queue_name, sampled_at)
);
CREATE INDEX idx_bus_depth_samples_time ON bus_depth_samples (sampled_at);

-- Functions ----------------------------------------------------------------------------------

-- Insert notifications, PGMQ's way (its throttle table, its channel
-- pgmq.q_<name>.INSERT, so any PGMQ listener hears them) but once per statement:
-- PGMQ's own trigger (pgmq.enable_notify_insert) runs its throttle UPDATE for every row,
-- which made a batch of 100 cost 100 UPDATEs of one row.
CREATE FUNCTION orch_bus_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgmq.notify_insert_throttle
    SET last_notified_at = clock_timestamp()
    WHERE queue_name = substring(TG_TABLE_NAME from 3)
      AND (throttle_interval_ms = 0
           OR clock_timestamp() - last_notified_at
              >= throttle_interval_ms * interval '1 millisecond');
    IF FOUND THEN
        PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
    END IF;
    RETURN NULL;
END $$;

-- Switch them on for a queue (idempotent): the throttle row (PGMQ keeps it in an
-- UNLOGGED table, which a crash empties, so this is also how it comes back) and the
-- statement trigger.
CREATE FUNCTION orch_bus_enable_notify(p_queue TEXT, p_throttle_ms INTEGER) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    qtable TEXT := pgmq.format_table_name(p_queue, 'q');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = p_queue) THEN
        RETURN;
    END IF;
    INSERT INTO pgmq.notify_insert_throttle (queue_name, throttle_interval_ms)
    VALUES (p_queue, p_throttle_ms)
    ON CONFLICT (queue_name) DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = format('pgmq.%I', qtable)::regclass
                     AND tgname = 'orch_notify_insert') THEN
        EXECUTE format('CREATE TRIGGER orch_notify_insert AFTER INSERT ON pgmq.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION orch_bus_notify_insert()', qtable);
    END IF;
END $$;
-- Queue names reach dynamic SQL only through format('%I'), and only names that PGMQ and
-- the registry's CHECK accept exist at all.

-- Write a batch of lifecycle records, one array a column, at most one record per
-- (queue, message); $1 names the writer (its counters row). A record is a message's
-- latest facts: its status at status_at, and in ``events`` (JSON) what the columns do
-- not hold. Rows are taken in key order, so two writers never lock the same rows in
-- opposite orders; an existing row takes only the events later than its own latest.
-- A message's status follows its latest event: produced → acked, or → failed → ... →
-- acked | dead_lettered | failed (no dead-letter queue), or → expired | purged;
-- dead_lettered → redriven.
CREATE FUNCTION orch_bus_log_rows(
    p_writer TEXT, p_queue TEXT[], p_message_id TEXT[], p_status TEXT[],
    p_status_at TIMESTAMPTZ[], p_producer TEXT[], p_consumer TEXT[], p_type TEXT[],
    p_correlation TEXT[], p_size INTEGER[], p_retry_count INTEGER[],
    p_delivered_at TIMESTAMPTZ[], p_consumed_at TIMESTAMPTZ[], p_processing_ms INTEGER[],
    p_error TEXT[], p_payload TEXT[], p_headers TEXT[], p_produced_at TIMESTAMPTZ[],
    p_events TEXT[]
) RETURNS void LANGUAGE sql AS $$
    WITH e AS (
        SELECT * FROM unnest(
            p_queue, p_message_id, p_status, p_status_at, p_producer, p_consumer, p_type,
            p_correlation, p_size, p_retry_count, p_delivered_at, p_consumed_at,
            p_processing_ms, p_error, p_payload, p_headers, p_produced_at, p_events
        ) AS x(queue_name, message_id, status, status_at, producer_service, consumer_service,
               message_type, correlation_id, message_size_bytes, retry_count, delivered_at,
               consumed_at, processing_time_ms, error_message, message_payload, headers,
               produced_at, events)
    ), logged AS (
        INSERT INTO message_logs AS m (
            queue_name, message_id, status, status_at, producer_service, consumer_service,
            message_type, correlation_id, message_size_bytes, retry_count, delivered_at,
            consumed_at, processing_time_ms, error_message, message_payload, headers,
            produced_at, events, updated_at)
        SELECT queue_name, message_id, status, status_at, coalesce(producer_service, 'unknown'),
               consumer_service, coalesce(message_type, 'unknown'), correlation_id,
               message_size_bytes, coalesce(retry_count, 0), delivered_at, consumed_at,
               processing_time_ms, error_message, message_payload::jsonb,
               coalesce(headers::jsonb, '{}'), coalesce(produced_at, status_at),
               coalesce(events::jsonb, '[]'), now()
        FROM e ORDER BY queue_name, message_id
        ON CONFLICT (queue_name, message_id) DO UPDATE SET
            status = CASE WHEN EXCLUDED.status_at >= m.status_at
                          THEN EXCLUDED.status ELSE m.status END,
            status_at = greatest(m.status_at, EXCLUDED.status_at),
            producer_service = CASE WHEN m.producer_service = 'unknown'
                                    THEN EXCLUDED.producer_service ELSE m.producer_service END,
            consumer_service = coalesce(EXCLUDED.consumer_service, m.consumer_service),
            message_type = CASE WHEN m.message_type = 'unknown'
                                THEN EXCLUDED.message_type ELSE m.message_type END,
            correlation_id = coalesce(m.correlation_id, EXCLUDED.correlation_id),
            message_size_bytes = coalesce(m.message_size_bytes, EXCLUDED.message_size_bytes),
            retry_count = greatest(m.retry_count, EXCLUDED.retry_count),
            delivered_at = greatest(m.delivered_at, EXCLUDED.delivered_at),
            consumed_at = coalesce(EXCLUDED.consumed_at, m.consumed_at),
            processing_time_ms = coalesce(EXCLUDED.processing_time_ms, m.processing_time_ms),
            error_message = coalesce(EXCLUDED.error_message, m.error_message),
            message_payload = coalesce(EXCLUDED.message_payload, m.message_payload),
            headers = CASE WHEN m.headers = '{}' THEN EXCLUDED.headers ELSE m.headers END,
            produced_at = least(m.produced_at, EXCLUDED.produced_at),
            events = m.events || coalesce(
                (SELECT jsonb_agg(ev) FROM jsonb_array_elements(EXCLUDED.events) AS ev
                 WHERE (ev->>'at')::timestamptz > m.status_at), '[]'),
            updated_at = now()
    )
    INSERT INTO bus_queue_counters AS c (
        queue_name, writer, acked, failed, dead_lettered, expired, redriven, purged)
    SELECT e.queue_name, p_writer,
           count(*) FILTER (WHERE e.status = 'acked'),
           count(*) FILTER (WHERE e.status = 'failed'),
           count(*) FILTER (WHERE e.status = 'dead_lettered'),
           count(*) FILTER (WHERE e.status = 'expired'),
           count(*) FILTER (WHERE e.status = 'redriven'),
           count(*) FILTER (WHERE e.status = 'purged')
    FROM e GROUP BY e.queue_name ORDER BY e.queue_name
    ON CONFLICT (queue_name, writer) DO UPDATE SET
        acked = c.acked + EXCLUDED.acked,
        failed = c.failed + EXCLUDED.failed,
        dead_lettered = c.dead_lettered + EXCLUDED.dead_lettered,
        expired = c.expired + EXCLUDED.expired,
        redriven = c.redriven + EXCLUDED.redriven,
        purged = c.purged + EXCLUDED.purged
$$;

-- The same from a JSON array of records (what the database's own paths and the saga
-- outbox write); $2 the writer.
CREATE FUNCTION orch_bus_log_events(p_events JSONB, p_writer TEXT) RETURNS void
LANGUAGE sql AS $$
    SELECT orch_bus_log_rows(
        p_writer, array_agg(queue_name), array_agg(message_id), array_agg(status),
        array_agg(status_at), array_agg(producer_service), array_agg(consumer_service),
        array_agg(message_type), array_agg(correlation_id), array_agg(message_size_bytes),
        array_agg(retry_count), array_agg(delivered_at), array_agg(consumed_at),
        array_agg(processing_time_ms), array_agg(error_message), array_agg(message_payload),
        array_agg(headers), array_agg(produced_at), array_agg(events))
    FROM jsonb_to_recordset(p_events) AS x(
        queue_name TEXT, message_id TEXT, status TEXT, status_at TIMESTAMPTZ,
        producer_service TEXT, consumer_service TEXT, message_type TEXT, correlation_id TEXT,
        message_size_bytes INTEGER, retry_count INTEGER, delivered_at TIMESTAMPTZ,
        consumed_at TIMESTAMPTZ, processing_time_ms INTEGER, error_message TEXT,
        message_payload TEXT, headers TEXT, produced_at TIMESTAMPTZ, events TEXT)
    HAVING count(*) > 0
$$;

-- The same, for callers that keep no counters row of their own.
CREATE FUNCTION orch_bus_log_events(p_events JSONB) RETURNS void LANGUAGE sql AS $$
    SELECT orch_bus_log_events(p_events, 'db')
$$;

-- One record for orch_bus_log_events: a message's facts and what just happened to it
-- (p_event, now), after its production and latest delivery (when known).
CREATE FUNCTION orch_bus_event(
    p_queue TEXT, p_msg_id BIGINT, p_event TEXT, p_message JSONB, p_headers JSONB,
    p_produced_at TIMESTAMPTZ, p_delivered_at TIMESTAMPTZ, p_retry_count INTEGER,
    p_error TEXT, p_consumer TEXT, p_with_payload BOOLEAN
) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'queue_name', p_queue, 'message_id', p_msg_id::text, 'status', p_event,
        'status_at', clock_timestamp(),
        'producer_service', p_message->>'producer',
        'consumer_service', p_consumer,
        'message_type', p_message->>'type',
        'correlation_id', p_message->>'correlation_id',
        'message_size_bytes', pg_column_size(p_message),
        'retry_count', p_retry_count,
        'delivered_at', p_delivered_at,
        'consumed_at', CASE WHEN p_event <> 'produced' THEN clock_timestamp() END,
        'error_message', p_error,
        'message_payload', CASE WHEN p_with_payload THEN (p_message->'payload')::text END,
        'headers', p_headers::text,
        'produced_at', p_produced_at,
        'events', CASE WHEN p_event <> 'produced' THEN jsonb_build_array(jsonb_strip_nulls(
            jsonb_build_object('event', p_event, 'at', clock_timestamp(),
                               'retry_count', p_retry_count, 'error', p_error,
                               'consumer', p_consumer)))::text END)
$$;

-- The sender's headers with a TTL written in as x-orch-expires-at (ISO-8601 UTC), in the
-- database's time as PGMQ's visibility is; the headers unchanged without a TTL. Every
-- send (single, batch, topic, the saga outbox) stamps its messages through this.
CREATE FUNCTION orch_bus_headers_with_ttl(p_headers JSONB, p_ttl_seconds INTEGER)
RETURNS JSONB LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN p_ttl_seconds IS NULL THEN p_headers
                ELSE coalesce(p_headers, '{}') || jsonb_build_object(
                     'x-orch-expires-at',
                     to_char((clock_timestamp() + make_interval(secs => p_ttl_seconds))
                                 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
           END
$$;

-- When a message expires (its x-orch-expires-at header), or NULL: a header PostgreSQL
-- cannot read must not make a message undeliverable, so it counts as no TTL.
-- (The cast sits in a function of its own: a plpgsql exception block costs a
-- subtransaction each time it is entered, and most messages have no TTL.)
CREATE FUNCTION orch_bus_read_timestamp(p_text TEXT) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN p_text::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE FUNCTION orch_bus_expires_at(p_headers JSONB) RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_headers) = 'object' AND p_headers ? 'x-orch-expires-at'
                THEN orch_bus_read_timestamp(p_headers->>'x-orch-expires-at') END
$$;

-- A message out of its queue for good, in the caller's transaction: to the dead-letter
-- queue with its last error, attempts, original queue and id (``p_dlq``), or, without a
-- dead-letter queue, to the archive as failed. Returns the dead letter's msg_id (or NULL).
CREATE FUNCTION orch_bus_bury(
    p_queue TEXT, p_dlq TEXT, m pgmq.message_record, p_attempts INTEGER, p_error TEXT,
    p_consumer TEXT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    dead_id BIGINT;
    event TEXT := 'dead_lettered';
    error_text TEXT := coalesce(p_error, 'no ack within the visibility timeout');
BEGIN
    IF p_dlq IS NULL THEN
        PERFORM pgmq.archive(p_queue, m.msg_id);
        event := 'failed';
        error_text := error_text || ' (delivery limit reached; the queue has no dead-letter queue)';
    ELSE
        PERFORM pgmq.delete(p_queue, m.msg_id);
        SELECT * INTO dead_id FROM pgmq.send(p_dlq, m.message,
            (coalesce(m.headers, '{}') - ARRAY['x-orch-last-error', 'x-orch-last-error-delivery'])
            || jsonb_build_object(
                'x-orch-original-queue', p_queue,
                'x-orch-original-message-id', m.msg_id::text,
                'x-orch-attempts', p_attempts::text,
                'x-orch-last-error', error_text,
                'x-orch-produced-at', to_char(m.enqueued_at AT TIME ZONE 'UTC',
                                              'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
            0);
    END IF;
    PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
        p_queue, m.msg_id, event, m.message, m.headers, m.enqueued_at,
        -- a read that found the limit passed is no delivery: its time is not the last one's
        CASE WHEN p_attempts >= m.read_ct THEN m.last_read_at END,
        greatest(p_attempts - 1, 0), error_text, p_consumer, true)), 'db');
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'dead_letter', 'op', event, 'queue_name', p_queue)::text);
    RETURN dead_id;
END $$;

-- Read up to p_qty messages for a consumer, oldest first, with a visibility timeout of
-- p_vt seconds. In the same statement: a message past its TTL is archived as expired,
-- and one read more than p_max_deliveries times is buried (orch_bus_bury) instead of
-- being returned; the read then goes on for what it set aside.
CREATE FUNCTION orch_bus_receive(
    p_queue TEXT, p_vt INTEGER, p_qty INTEGER, p_max_deliveries INTEGER, p_dlq TEXT,
    p_consumer TEXT
) RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
    wanted INTEGER := p_qty;
    set_aside INTEGER;
    expires TIMESTAMPTZ;
BEGIN
    LOOP
        set_aside := 0;
        FOR m IN SELECT * FROM pgmq.read(p_queue, p_vt, wanted) LOOP
            expires := orch_bus_expires_at(m.headers);
            IF expires IS NOT NULL AND expires <= clock_timestamp() THEN
                PERFORM pgmq.archive(p_queue, m.msg_id);
                PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
                    p_queue, m.msg_id, 'expired', m.message, m.headers, m.enqueued_at, NULL,
                    m.read_ct - 1, NULL, NULL, true)), 'db');
                set_aside := set_aside + 1;
            ELSIF p_max_deliveries IS NOT NULL AND m.read_ct > p_max_deliveries THEN
                PERFORM orch_bus_bury(p_queue, p_dlq, m, m.read_ct - 1,
                    CASE WHEN m.headers->>'x-orch-last-error-delivery' = (m.read_ct - 1)::text
                         THEN m.headers->>'x-orch-last-error' END,
                    p_consumer);
                set_aside := set_aside + 1;
            ELSE
                wanted := wanted - 1;
                RETURN NEXT m;
            END IF;
        END LOOP;
        EXIT WHEN set_aside = 0 OR wanted <= 0;
    END LOOP;
END $$;

-- A consumer gives a message back: visible again after p_delay seconds, with the error
-- recorded for the next consumer and for its dead letter; buried at once when that was
-- its last allowed delivery. Returns 'retry', 'dead_lettered', 'failed', or nothing when
-- the message is not in the queue.
CREATE FUNCTION orch_bus_nack(
    p_queue TEXT, p_msg_id BIGINT, p_delay INTEGER, p_error TEXT, p_max_deliveries INTEGER,
    p_dlq TEXT, p_consumer TEXT
) RETURNS TABLE (outcome TEXT, read_ct INTEGER, message JSONB, headers JSONB,
                  enqueued_at TIMESTAMPTZ, last_read_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
BEGIN
    EXECUTE format($q$
        UPDATE pgmq.%I
        SET vt = clock_timestamp() + make_interval(secs => $2),
            headers = coalesce(headers, '{}') || jsonb_build_object(
                'x-orch-last-error', coalesce($3::text, 'given back by the consumer'),
                'x-orch-last-error-delivery', read_ct::text)
        WHERE msg_id = $1
        RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        $q$, pgmq.format_table_name(p_queue, 'q'))
    INTO m USING p_msg_id, p_delay, p_error;
    IF m.msg_id IS NULL THEN
        RETURN;
    END IF;
    IF p_max_deliveries IS NOT NULL AND m.read_ct >= p_max_deliveries THEN
        PERFORM orch_bus_bury(p_queue, p_dlq, m, m.read_ct, p_error, p_consumer);
        RETURN QUERY SELECT CASE WHEN p_dlq IS NULL THEN 'failed' ELSE 'dead_lettered' END,
                            m.read_ct, m.message, m.headers, m.enqueued_at, m.last_read_at;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'retry'::text, m.read_ct, m.message, m.headers, m.enqueued_at,
                        m.last_read_at;
END $$;

-- A message straight to its dead letters (a push answered 4xx: retrying cannot help).
CREATE FUNCTION orch_bus_dead_letter(
    p_queue TEXT, p_msg_id BIGINT, p_error TEXT, p_dlq TEXT, p_consumer TEXT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
BEGIN
    EXECUTE format($q$
        SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        FROM pgmq.%I WHERE msg_id = $1 FOR UPDATE
        $q$, pgmq.format_table_name(p_queue, 'q'))
    INTO m USING p_msg_id;
    IF m.msg_id IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN coalesce(orch_bus_bury(p_queue, p_dlq, m, m.read_ct, p_error, p_consumer), 0);
END $$;

-- An ack: the message is deleted (the log keeps its record; see orchcore.bus.logs).
-- Returns what the log needs, or nothing when the message is not in the queue.
CREATE FUNCTION orch_bus_ack(p_queue TEXT, p_msg_ids BIGINT[])
RETURNS TABLE (msg_id BIGINT, read_ct INTEGER, enqueued_at TIMESTAMPTZ,
               last_read_at TIMESTAMPTZ, acked_at TIMESTAMPTZ, message_type TEXT,
               correlation_id TEXT, producer TEXT, size_bytes INTEGER, headers_json TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        DELETE FROM pgmq.%I WHERE msg_id = ANY($1)
        RETURNING msg_id, read_ct, enqueued_at, last_read_at, clock_timestamp(),
                  message->>'type', message->>'correlation_id', message->>'producer',
                  pg_column_size(message), headers::text
        $q$, pgmq.format_table_name(p_queue, 'q'))
    USING p_msg_ids;
END $$;

-- Dead letters back to their queue, as new messages (read count 0), the oldest first:
-- chosen ids (p_ids) or all, at most p_limit. A dead letter leaves the dead-letter
-- queue in the statement that sends it again, so redriving it twice sends it once.
CREATE FUNCTION orch_bus_redrive(p_queue TEXT, p_ids BIGINT[], p_limit INTEGER)
RETURNS TABLE (dead_letter_id BIGINT, message_id BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
    new_id BIGINT;
    original TEXT;
BEGIN
    FOR m IN EXECUTE format($q$
        DELETE FROM pgmq.%1$I
        WHERE msg_id IN (SELECT d.msg_id FROM pgmq.%1$I d
                         WHERE $1::bigint[] IS NULL OR d.msg_id = ANY($1)
                         ORDER BY d.msg_id LIMIT $2 FOR UPDATE SKIP LOCKED)
        RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        $q$, pgmq.format_table_name(p_queue || '_dlq', 'q'))
        USING p_ids, p_limit
    LOOP
        original := coalesce(m.headers->>'x-orch-original-message-id', '');
        SELECT * INTO new_id FROM pgmq.send(p_queue, m.message,
            (coalesce(m.headers, '{}') - ARRAY['x-orch-original-queue',
                'x-orch-original-message-id', 'x-orch-attempts', 'x-orch-last-error',
                'x-orch-last-error-delivery', 'x-orch-produced-at'])
            || jsonb_build_object('x-orch-redriven-from', original),
            0);
        PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
            p_queue, new_id, 'produced', m.message, m.headers, clock_timestamp(), NULL, 0,
            NULL, NULL, false)), 'db');
        IF original ~ '^[0-9]+$' THEN
            PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
                p_queue, original::bigint, 'redriven', m.message, m.headers, NULL, NULL, 0,
                NULL, NULL, false)), 'db');
        END IF;
        dead_letter_id := m.msg_id;
        message_id := new_id;
        RETURN NEXT;
    END LOOP;
    IF FOUND THEN
        PERFORM pg_notify('orch', json_build_object(
            'topic', 'dead_letter', 'op', 'redriven', 'queue_name', p_queue)::text);
    END IF;
END $$;

-- Dead letters deleted for good (all, oldest first, at most p_limit); logged as purged.
CREATE FUNCTION orch_bus_purge_dead_letters(p_queue TEXT, p_limit INTEGER)
RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
    original TEXT;
BEGIN
    FOR m IN EXECUTE format($q$
        DELETE FROM pgmq.%1$I
        WHERE msg_id IN (SELECT d.msg_id FROM pgmq.%1$I d
                         ORDER BY d.msg_id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        $q$, pgmq.format_table_name(p_queue || '_dlq', 'q'))
        USING p_limit
    LOOP
        original := m.headers->>'x-orch-original-message-id';
        IF original ~ '^[0-9]+$' THEN
            PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
                p_queue, original::bigint, 'purged', m.message, m.headers, NULL, NULL, 0,
                NULL, NULL, false)), 'db');
        END IF;
        RETURN NEXT m.msg_id;
    END LOOP;
    IF FOUND THEN
        PERFORM pg_notify('orch', json_build_object(
            'topic', 'dead_letter', 'op', 'purged', 'queue_name', p_queue)::text);
    END IF;
END $$;

-- The messages of a PGMQ queue as they are, oldest first (or newest first), without
-- reading them (a read would count as a delivery).
CREATE FUNCTION orch_bus_peek(p_queue TEXT, p_limit INTEGER, p_newest BOOLEAN)
RETURNS SETOF pgmq.message_record LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF to_regclass(format('pgmq.%I', pgmq.format_table_name(p_queue, 'q'))) IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        FROM pgmq.%I ORDER BY msg_id %s LIMIT $1
        $q$, pgmq.format_table_name(p_queue, 'q'), CASE WHEN p_newest THEN 'DESC' ELSE 'ASC' END)
    USING p_limit;
END $$;

-- A queue's depth now: ready (visible), in flight (read, not yet visible again: held by
-- a consumer or waiting out a nack's delay), delayed (never read, not yet visible), the
-- ages of its messages and how many were ever sent (PGMQ's msg_id sequence). Zeros for a
-- queue PGMQ does not have.
CREATE FUNCTION orch_bus_depth(p_queue TEXT)
RETURNS TABLE (total BIGINT, ready BIGINT, in_flight BIGINT, delayed BIGINT,
               oldest_age_seconds DOUBLE PRECISION, average_age_seconds DOUBLE PRECISION,
               sent_total BIGINT)
-- ROWS 1: it answers one row; the default estimate (1000) made PostgreSQL JIT-compile
-- every metrics query over the queues (~500 ms of compiling for a 2 ms query).
LANGUAGE plpgsql STABLE ROWS 1 AS $$
DECLARE
    qtable TEXT := pgmq.format_table_name(p_queue, 'q');
BEGIN
    IF to_regclass(format('pgmq.%I', qtable)) IS NULL THEN
        RETURN QUERY SELECT 0::bigint, 0::bigint, 0::bigint, 0::bigint,
                            NULL::double precision, 0::double precision, 0::bigint;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT count(*),
               count(*) FILTER (WHERE vt <= now()),
               count(*) FILTER (WHERE vt > now() AND read_ct > 0),
               count(*) FILTER (WHERE vt > now() AND read_ct = 0),
               extract(epoch FROM now() - min(enqueued_at))::double precision,
               coalesce(avg(extract(epoch FROM now() - enqueued_at)), 0)::double precision,
               (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pgmq.%I)
        FROM pgmq.%I
        $q$, qtable || '_msg_id_seq', qtable);
END $$;

-- Seconds until the next message of the queue becomes visible (NULL: none waiting), so
-- a long-polling consumer wakes for a message whose visibility timeout runs out.
CREATE FUNCTION orch_bus_next_visible_in(p_queue TEXT) RETURNS DOUBLE PRECISION
LANGUAGE plpgsql STABLE AS $$
DECLARE
    seconds DOUBLE PRECISION;
BEGIN
    EXECUTE format('SELECT extract(epoch FROM min(vt) - clock_timestamp()) FROM pgmq.%I',
                   pgmq.format_table_name(p_queue, 'q'))
    INTO seconds;
    RETURN seconds;
END $$;

-- Archive up to p_limit visible messages of the queue whose TTL has passed (nobody has
-- asked for them; a receive would have done the same), logged as expired.
CREATE FUNCTION orch_bus_expire_due(p_queue TEXT, p_limit INTEGER) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
    n INTEGER := 0;
BEGIN
    FOR m IN EXECUTE format($q$
        SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers
        FROM pgmq.%I
        WHERE vt <= clock_timestamp() AND headers ? 'x-orch-expires-at'
          AND orch_bus_expires_at(headers) <= clock_timestamp()
        ORDER BY msg_id LIMIT $1 FOR UPDATE SKIP LOCKED
        $q$, pgmq.format_table_name(p_queue, 'q'))
        USING p_limit
    LOOP
        PERFORM pgmq.archive(p_queue, m.msg_id);
        PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
            p_queue, m.msg_id, 'expired', m.message, m.headers, m.enqueued_at, NULL,
            greatest(m.read_ct - 1, 0), NULL, NULL, true)), 'db');
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Delete up to p_limit archived messages of the queue archived before p_before.
CREATE FUNCTION orch_bus_trim_archive(p_queue TEXT, p_before TIMESTAMPTZ, p_limit INTEGER)
RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    atable TEXT := pgmq.format_table_name(p_queue, 'a');
    n INTEGER;
BEGIN
    IF to_regclass(format('pgmq.%I', atable)) IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format($q$
        DELETE FROM pgmq.%1$I WHERE msg_id IN (
            SELECT msg_id FROM pgmq.%1$I WHERE archived_at < $1
            ORDER BY archived_at LIMIT $2 FOR UPDATE SKIP LOCKED)
        $q$, atable)
    USING p_before, p_limit;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

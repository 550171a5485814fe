-- Insert notifications throttled per session instead of through PGMQ's throttle row.
-- The row (pgmq.notify_insert_throttle) was updated by every notifying insert: an extra
-- row version a send, and a lock every producer of a queue queues on; measured, it cost
-- a single send 60-90 µs, against 15-30 µs for the notify alone. Now each backend keeps
-- the time of its last notification for the table in a session setting (no table, no
-- lock, nothing written) and notifies again once the interval has passed. Several
-- producers may each notify within one interval; a listener's trailing wake-up
-- (orchcore.bus.wakeups) covers the inserts a throttle kept quiet, as before.
-- The interval is the trigger's argument (orch_bus_enable_notify sets it); a trigger
-- made before this migration has none and keeps 10 ms. The throttle row is still
-- written on enable, so PGMQ's own list of notifying queues names orch's.
CREATE OR REPLACE FUNCTION orch_bus_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    interval_ms DOUBLE PRECISION := CASE WHEN TG_NARGS > 0 THEN TG_ARGV[0]::double precision
                                         ELSE 10 END;
    now_ms DOUBLE PRECISION := extract(epoch FROM clock_timestamp()) * 1000;
    setting TEXT := 'orch_bus_notified.' || TG_TABLE_NAME;
    last_ms TEXT := current_setting(setting, true);
BEGIN
    IF last_ms IS NULL OR last_ms = '' OR now_ms - last_ms::double precision >= interval_ms
       OR now_ms < last_ms::double precision THEN  -- the clock went back: notify
        PERFORM set_config(setting, now_ms::text, false);
        PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION orch_bus_enable_notify(p_queue TEXT, p_throttle_ms INTEGER)
RETURNS void LANGUAGE plpgsql AS $$
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
                       'FOR EACH STATEMENT EXECUTE FUNCTION orch_bus_notify_insert(%L)',
                       qtable, greatest(p_throttle_ms, 0)::text);
    END IF;
END $$;


-- A message a read handed out that must not be delivered, in the caller's transaction:
-- past its TTL it is archived as expired, read more than p_max_deliveries times it is
-- buried (orch_bus_bury). Returns whether it was set aside. orch_bus_receive applies it
-- to each message pgmq.read returns; orch's prepared read (orchcore.bus.direct) to the
-- few it finds due, through orch_bus_set_aside.
CREATE FUNCTION orch_bus_set_aside_one(
    p_queue TEXT, m pgmq.message_record, p_max_deliveries INTEGER, p_dlq TEXT,
    p_consumer TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    expires TIMESTAMPTZ := orch_bus_expires_at(m.headers);
BEGIN
    IF expires IS NOT NULL AND expires <= clock_timestamp() THEN
        PERFORM pgmq.archive(p_queue, m.msg_id);
        PERFORM orch_bus_log_events(jsonb_build_array(orch_bus_event(
            p_queue, m.msg_id, 'expired', m.message, m.headers, m.enqueued_at, NULL,
            m.read_ct - 1, NULL, NULL, true)), 'db');
        RETURN true;
    ELSIF p_max_deliveries IS NOT NULL AND m.read_ct > p_max_deliveries THEN
        PERFORM orch_bus_bury(p_queue, p_dlq, m, m.read_ct - 1,
            CASE WHEN m.headers->>'x-orch-last-error-delivery' = (m.read_ct - 1)::text
                 THEN m.headers->>'x-orch-last-error' END,
            p_consumer);
        RETURN true;
    END IF;
    RETURN false;
END $$;

-- Of the messages p_ids (just read, so in flight), those due to be set aside are; their
-- ids come back. A message no longer in the queue, or not due after all, is left alone
-- (the caller delivers it).
CREATE FUNCTION orch_bus_set_aside(
    p_queue TEXT, p_ids BIGINT[], p_max_deliveries INTEGER, p_dlq TEXT, p_consumer TEXT
) RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
BEGIN
    FOR m IN EXECUTE format(
        'SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers '
        'FROM pgmq.%I WHERE msg_id = ANY($1) ORDER BY msg_id FOR UPDATE',
        pgmq.format_table_name(p_queue, 'q')) USING p_ids
    LOOP
        IF orch_bus_set_aside_one(p_queue, m, p_max_deliveries, p_dlq, p_consumer) THEN
            RETURN NEXT m.msg_id;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION orch_bus_receive(
    p_queue TEXT, p_vt INTEGER, p_qty INTEGER, p_max_deliveries INTEGER, p_dlq TEXT,
    p_consumer TEXT
) RETURNS SETOF pgmq.message_record LANGUAGE plpgsql AS $$
DECLARE
    m pgmq.message_record;
    wanted INTEGER := p_qty;
    set_aside INTEGER;
BEGIN
    LOOP
        set_aside := 0;
        FOR m IN SELECT * FROM pgmq.read(p_queue, p_vt, wanted) LOOP
            IF orch_bus_set_aside_one(p_queue, m, p_max_deliveries, p_dlq, p_consumer) THEN
                set_aside := set_aside + 1;
            ELSE
                wanted := wanted - 1;
                RETURN NEXT m;
            END IF;
        END LOOP;
        EXIT WHEN set_aside = 0 OR wanted <= 0;
    END LOOP;
END $$;

-- The log writer's batch (migration 0007) with its counters taken from the status and
-- queue arrays alone: counted from the records' CTE, that CTE was read twice, so
-- PostgreSQL kept all of its columns in a work table first; measured, 4-7 µs of the
-- server's ~30 µs a log row.
CREATE OR REPLACE FUNCTION orch_bus_log_rows(
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
    FROM unnest(p_queue, p_status) AS e(queue_name, status)
    GROUP BY e.queue_name ORDER BY e.queue_name
    ON CONFLICT (queue_name, writer) DO UPDATE SET
        acked = c.acked + EXCLUDED.acked,
        failed = c.failed + EXCLUDED.failed,
        dead_lettered = c.dead_lettered + EXCLUDED.dead_lettered,
        expired = c.expired + EXCLUDED.expired,
        redriven = c.redriven + EXCLUDED.redriven,
        purged = c.purged + EXCLUDED.purged
$$;

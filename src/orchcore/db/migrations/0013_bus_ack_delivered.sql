-- An ack of a message this process handed out (orchcore.bus.deliveries): the receive
-- kept the facts its log record needs, so the delete returns only what costs nothing to
-- read (pg_column_size reads a value's header, not the value) and the time. The facts
-- orch_bus_ack returns (jsonb fields, the headers as text) made an ack measurably
-- dearer than PGMQ's own delete; orch_bus_ack stays for an ack of a message received
-- elsewhere.
CREATE FUNCTION orch_bus_ack_delivered(p_queue TEXT, p_msg_ids BIGINT[])
RETURNS TABLE (msg_id BIGINT, acked_at TIMESTAMPTZ, size_bytes INTEGER)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        DELETE FROM pgmq.%I WHERE msg_id = ANY($1)
        RETURNING msg_id, clock_timestamp(), pg_column_size(message)
        $q$, pgmq.format_table_name(p_queue, 'q'))
    USING p_msg_ids;
END $$;

-- A delivery that never happened is handed back unspent: a pusher that read a message
-- and then could not even call its consumer (breaker open, rate limited, no healthy
-- instance) makes it visible again after p_delay seconds with PGMQ's read count taken
-- back by one, so a long outage of the consumer cannot use up the message's deliveries
-- and bury it without a single call. The headers are left alone: the last error a
-- consumer gave stays the one its dead letter would show. Returns what the message's
-- log needs, or nothing when the message is not in the queue.
CREATE FUNCTION orch_bus_hand_back(p_queue TEXT, p_msg_id BIGINT, p_delay INTEGER)
RETURNS TABLE (read_ct INTEGER, message JSONB, headers JSONB, enqueued_at TIMESTAMPTZ,
               last_read_at TIMESTAMPTZ, at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        UPDATE pgmq.%I
        SET vt = clock_timestamp() + make_interval(secs => $2),
            read_ct = greatest(read_ct - 1, 0)
        WHERE msg_id = $1
        RETURNING read_ct, message, headers, enqueued_at, last_read_at, clock_timestamp()
        $q$, pgmq.format_table_name(p_queue, 'q'))
    USING p_msg_id, p_delay;
END $$;

-- An open breaker keeps the count of the failures that opened it (5/5, not 4/5), and a
-- failed half-open trial counts as one failure. Replaces the function from 0002.

CREATE OR REPLACE FUNCTION orch_breaker_after_call(
    p_id UUID, p_generation BIGINT, p_permit UUID, p_success BOOLEAN, p_now TIMESTAMPTZ,
    p_detail TEXT
) RETURNS TABLE (state TEXT, generation BIGINT, failure_count INTEGER,
                 next_attempt_at TIMESTAMPTZ, applied BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    b circuit_breakers;
BEGIN
    SELECT * INTO b FROM circuit_breakers WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- deleted meanwhile: nothing to update
    END IF;
    IF p_permit IS NOT NULL THEN
        DELETE FROM circuit_breaker_permits WHERE permit_id = p_permit;
    END IF;
    IF b.generation <> p_generation THEN
        RETURN QUERY SELECT b.current_state, b.generation, b.failure_count, b.next_attempt_at,
                            false;
        RETURN;
    END IF;
    IF b.current_state = 'closed' THEN
        IF p_success THEN
            IF b.failure_count > 0 THEN
                UPDATE circuit_breakers SET failure_count = 0, updated_at = p_now WHERE id = p_id;
            END IF;
        ELSE
            UPDATE circuit_breakers SET failure_count = b.failure_count + 1,
                last_failure_at = p_now, updated_at = p_now
            WHERE id = p_id;
            IF b.failure_count + 1 >= b.failure_threshold THEN
                SELECT * INTO b FROM circuit_breakers WHERE id = p_id;
                PERFORM orch_breaker_transition(
                    b, 'open', b.failure_count || ' consecutive failures; last: ' || p_detail,
                    'orch', p_now);
            END IF;
        END IF;
    ELSIF b.current_state = 'half_open' THEN
        IF NOT p_success THEN
            UPDATE circuit_breakers SET failure_count = 1, last_failure_at = p_now
            WHERE id = p_id;
            SELECT * INTO b FROM circuit_breakers WHERE id = p_id;
            PERFORM orch_breaker_transition(b, 'open', 'trial call failed: ' || p_detail,
                                            'orch', p_now);
        ELSIF b.success_count + 1 >= b.success_threshold THEN
            PERFORM orch_breaker_transition(
                b, 'closed', (b.success_count + 1) || ' successful trial calls', 'orch', p_now);
        ELSE
            UPDATE circuit_breakers SET success_count = b.success_count + 1, updated_at = p_now
            WHERE id = p_id;
        END IF;
    END IF;
    SELECT * INTO b FROM circuit_breakers WHERE id = p_id;
    RETURN QUERY SELECT b.current_state, b.generation, b.failure_count, b.next_attempt_at, true;
END $$;

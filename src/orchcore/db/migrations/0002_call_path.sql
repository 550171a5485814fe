-- The guarded call path: shared circuit breakers (with half-open permits and a
-- transition history), token buckets for rate limits, and mesh policy application.

ALTER TABLE circuit_breakers
    ADD COLUMN half_open_max_calls INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN generation BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN count_429_as_failure BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN state_reason TEXT;

UPDATE circuit_breakers SET current_state = 'closed' WHERE current_state IS NULL;
ALTER TABLE circuit_breakers
    ALTER COLUMN current_state SET NOT NULL,
    ALTER COLUMN endpoint_pattern SET NOT NULL,
    ALTER COLUMN failure_count SET NOT NULL,
    ALTER COLUMN success_count SET NOT NULL,
    ALTER COLUMN failure_threshold SET NOT NULL,
    ALTER COLUMN success_threshold SET NOT NULL,
    ALTER COLUMN timeout_duration SET NOT NULL,
    ADD CONSTRAINT circuit_breakers_state_check CHECK
        (current_state IN ('closed', 'open', 'half_open', 'forced_open', 'disabled')),
    ADD CONSTRAINT circuit_breakers_thresholds_check CHECK
        (failure_threshold >= 1 AND success_threshold >= 1 AND timeout_duration >= 0
         AND half_open_max_calls >= 1);

-- A half-open trial in flight. It expires if its holder dies, so a crashed daemon
-- never keeps a breaker from closing.
CREATE TABLE circuit_breaker_permits (
    permit_id UUID PRIMARY KEY,
    breaker_id UUID NOT NULL REFERENCES circuit_breakers(id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_circuit_breaker_permits_breaker ON circuit_breaker_permits(breaker_id);

CREATE TABLE circuit_breaker_transitions (
    id BIGSERIAL PRIMARY KEY,
    breaker_id UUID NOT NULL REFERENCES circuit_breakers(id) ON DELETE CASCADE,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    actor TEXT NOT NULL,
    generation BIGINT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_circuit_breaker_transitions_breaker
    ON circuit_breaker_transitions(breaker_id, occurred_at DESC);

-- Token buckets, one per (source, target), shared by every daemon.
CREATE TABLE rate_limit_buckets (
    source_service TEXT NOT NULL,
    target_service TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_service, target_service)
);

ALTER TABLE service_mesh_policies
    ADD COLUMN last_applied_at TIMESTAMPTZ,
    ADD COLUMN last_applied_by TEXT;

CREATE INDEX idx_service_events_target_time ON service_events(target_service, created_at DESC);

-- Breaker state machine ---------------------------------------------------------
-- Both functions lock the breaker row, so every daemon sees one order of events.
-- A transition bumps the generation; an outcome reported for an older generation
-- (a call that began under an earlier state) changes nothing.

CREATE FUNCTION orch_breaker_transition(
    b circuit_breakers, p_to TEXT, p_trigger TEXT, p_actor TEXT, p_now TIMESTAMPTZ
) RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    UPDATE circuit_breakers SET
        current_state = p_to,
        generation = b.generation + 1,
        failure_count = CASE WHEN p_to IN ('closed', 'half_open') THEN 0 ELSE failure_count END,
        success_count = 0,
        state_changed_at = p_now,
        state_reason = p_trigger,
        next_attempt_at = CASE WHEN p_to = 'open'
                               THEN p_now + make_interval(secs => b.timeout_duration) END,
        updated_at = p_now
    WHERE id = b.id;
    DELETE FROM circuit_breaker_permits WHERE breaker_id = b.id;
    INSERT INTO circuit_breaker_transitions
        (breaker_id, from_state, to_state, trigger, actor, generation, occurred_at)
    VALUES (b.id, b.current_state, p_to, p_trigger, p_actor, b.generation + 1, p_now);
    RETURN b.generation + 1;
END $$;

-- Before a call that the in-process cache could not decide (open or half-open).
-- decision: 'allow' (closed/disabled), 'trial' (a half-open permit), 'reject'.
CREATE FUNCTION orch_breaker_before_call(
    p_id UUID, p_now TIMESTAMPTZ, p_holder TEXT, p_permit_seconds DOUBLE PRECISION
) RETURNS TABLE (decision TEXT, state TEXT, generation BIGINT, permit_id UUID,
                 next_attempt_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    b circuit_breakers;
    in_flight INTEGER;
    new_permit UUID;
BEGIN
    SELECT * INTO b FROM circuit_breakers WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'circuit breaker % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF b.current_state IN ('closed', 'disabled') THEN
        RETURN QUERY SELECT 'allow'::text, b.current_state, b.generation, NULL::uuid,
                            b.next_attempt_at;
        RETURN;
    END IF;
    IF b.current_state = 'forced_open'
       OR (b.current_state = 'open' AND p_now < b.next_attempt_at) THEN
        RETURN QUERY SELECT 'reject'::text, b.current_state, b.generation, NULL::uuid,
                            b.next_attempt_at;
        RETURN;
    END IF;
    IF b.current_state = 'open' THEN
        PERFORM orch_breaker_transition(b, 'half_open', 'open timeout elapsed', 'orch', p_now);
        SELECT * INTO b FROM circuit_breakers WHERE id = p_id;
    END IF;
    DELETE FROM circuit_breaker_permits cp
    WHERE cp.breaker_id = p_id AND (cp.expires_at <= p_now OR cp.generation <> b.generation);
    SELECT count(*) INTO in_flight FROM circuit_breaker_permits cp WHERE cp.breaker_id = p_id;
    IF in_flight >= b.half_open_max_calls THEN
        RETURN QUERY SELECT 'reject'::text, b.current_state, b.generation, NULL::uuid,
                            b.next_attempt_at;
        RETURN;
    END IF;
    new_permit := gen_random_uuid();
    INSERT INTO circuit_breaker_permits (permit_id, breaker_id, generation, holder, expires_at)
    VALUES (new_permit, p_id, b.generation, p_holder,
            p_now + make_interval(secs => p_permit_seconds));
    RETURN QUERY SELECT 'trial'::text, b.current_state, b.generation, new_permit,
                        b.next_attempt_at;
END $$;

-- After a call whose outcome matters to the breaker.
CREATE FUNCTION orch_breaker_after_call(
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
        ELSIF b.failure_count + 1 >= b.failure_threshold THEN
            UPDATE circuit_breakers SET last_failure_at = p_now WHERE id = p_id;
            PERFORM orch_breaker_transition(
                b, 'open', (b.failure_count + 1) || ' consecutive failures; last: ' || p_detail,
                'orch', p_now);
        ELSE
            UPDATE circuit_breakers SET failure_count = b.failure_count + 1,
                last_failure_at = p_now, updated_at = p_now
            WHERE id = p_id;
        END IF;
    ELSIF b.current_state = 'half_open' THEN
        IF NOT p_success THEN
            UPDATE circuit_breakers SET last_failure_at = p_now WHERE id = p_id;
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

-- Token bucket: take one token if there is one; refill by elapsed time first.
CREATE FUNCTION orch_rate_limit_take(
    p_source TEXT, p_target TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION,
    p_now TIMESTAMPTZ
) RETURNS TABLE (admitted BOOLEAN, tokens_left DOUBLE PRECISION, retry_after DOUBLE PRECISION)
LANGUAGE plpgsql AS $$
DECLARE
    available DOUBLE PRECISION;
BEGIN
    INSERT INTO rate_limit_buckets (source_service, target_service, tokens, updated_at)
    VALUES (p_source, p_target, p_burst, p_now)
    ON CONFLICT (source_service, target_service) DO NOTHING;
    SELECT LEAST(p_burst, rb.tokens + GREATEST(0, EXTRACT(EPOCH FROM (p_now - rb.updated_at)))
                                       * p_rate)
    INTO available
    FROM rate_limit_buckets rb
    WHERE rb.source_service = p_source AND rb.target_service = p_target
    FOR UPDATE;
    IF available >= 1 THEN
        UPDATE rate_limit_buckets SET tokens = available - 1, updated_at = p_now
        WHERE source_service = p_source AND target_service = p_target;
        RETURN QUERY SELECT true, available - 1, 0::double precision;
    ELSE
        UPDATE rate_limit_buckets SET tokens = available, updated_at = p_now
        WHERE source_service = p_source AND target_service = p_target;
        RETURN QUERY SELECT false, available,
                            CASE WHEN p_rate > 0 THEN (1 - available) / p_rate ELSE NULL END;
    END IF;
END $$;

-- Live updates ---------------------------------------------------------------------

CREATE FUNCTION orch_notify_breaker() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data circuit_breakers;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.current_state IS NOT DISTINCT FROM NEW.current_state
       AND OLD.generation IS NOT DISTINCT FROM NEW.generation
       AND OLD.failure_count IS NOT DISTINCT FROM NEW.failure_count
       AND OLD.success_count IS NOT DISTINCT FROM NEW.success_count
       AND OLD.failure_threshold IS NOT DISTINCT FROM NEW.failure_threshold
       AND OLD.success_threshold IS NOT DISTINCT FROM NEW.success_threshold
       AND OLD.timeout_duration IS NOT DISTINCT FROM NEW.timeout_duration
       AND OLD.half_open_max_calls IS NOT DISTINCT FROM NEW.half_open_max_calls THEN
        RETURN NULL;
    END IF;
    -- Everything the in-process cache holds, so a daemon updates it without a query.
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'breaker', 'op', lower(TG_OP), 'id', row_data.id,
        'source', row_data.service_name, 'target', row_data.target_service,
        'endpoint_pattern', row_data.endpoint_pattern,
        'state', row_data.current_state, 'generation', row_data.generation,
        'failure_count', row_data.failure_count, 'success_count', row_data.success_count,
        'next_attempt_at', row_data.next_attempt_at,
        'failure_threshold', row_data.failure_threshold,
        'success_threshold', row_data.success_threshold,
        'timeout_duration', row_data.timeout_duration,
        'half_open_max_calls', row_data.half_open_max_calls,
        'count_429_as_failure', row_data.count_429_as_failure)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER circuit_breakers_notify AFTER INSERT OR UPDATE OR DELETE ON circuit_breakers
    FOR EACH ROW EXECUTE FUNCTION orch_notify_breaker();

CREATE FUNCTION orch_notify_mesh_policy() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data service_mesh_policies;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'mesh_policy', 'op', lower(TG_OP), 'id', row_data.id,
        'name', row_data.policy_name)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER service_mesh_policies_notify
    AFTER INSERT OR UPDATE OR DELETE ON service_mesh_policies
    FOR EACH ROW EXECUTE FUNCTION orch_notify_mesh_policy();

-- Named queries of the resilience layer (breakers, rate limits, call events).

-- name: all_breakers
SELECT * FROM circuit_breakers ORDER BY service_name, target_service, endpoint_pattern

-- name: breaker_by_id
SELECT * FROM circuit_breakers WHERE id = $1

-- name: ensure_breaker
-- Created on first use with the parameters in force; an existing breaker keeps its own.
INSERT INTO circuit_breakers AS cb (
    service_name, target_service, endpoint_pattern, failure_threshold, success_threshold,
    timeout_duration, half_open_max_calls, count_429_as_failure, state_changed_at,
    created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)
ON CONFLICT (service_name, target_service, endpoint_pattern) DO UPDATE
    SET updated_at = cb.updated_at
RETURNING *, (xmax = 0) AS created

-- name: update_breaker_settings
UPDATE circuit_breakers SET failure_threshold = $2, success_threshold = $3,
    timeout_duration = $4, half_open_max_calls = $5, count_429_as_failure = $6, updated_at = $7
WHERE id = $1
RETURNING *

-- name: lock_breaker
SELECT * FROM circuit_breakers WHERE id = $1 FOR UPDATE

-- name: before_call
SELECT * FROM orch_breaker_before_call($1, $2, $3, $4)

-- name: after_call
SELECT * FROM orch_breaker_after_call($1, $2, $3, $4, $5, $6)

-- name: operator_transition
SELECT orch_breaker_transition(cb, $2, $3, $4, $5) AS generation
FROM circuit_breakers cb WHERE cb.id = $1

-- name: breaker_history
SELECT * FROM circuit_breaker_transitions WHERE breaker_id = $1
ORDER BY occurred_at DESC, id DESC LIMIT $2

-- name: transitions_since
SELECT * FROM circuit_breaker_transitions WHERE breaker_id = $1 AND occurred_at >= $2
ORDER BY occurred_at, id

-- name: state_before
SELECT to_state, occurred_at FROM circuit_breaker_transitions
WHERE breaker_id = $1 AND occurred_at < $2 ORDER BY occurred_at DESC, id DESC LIMIT 1

-- name: call_totals_by_hour
-- Calls from source to target whose endpoint matches the breaker's LIKE pattern
-- (refusals, which never reached the target, are not requests).
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour,
       count(*) AS total,
       count(*) FILTER (WHERE event_type IN ('error', 'timeout') OR status_code >= 500) AS failed
FROM service_events
WHERE source_service = $1 AND target_service = $2 AND endpoint LIKE $3
  AND created_at >= $4 AND created_at <= $5 AND event_type <> 'rejected'
GROUP BY 1 ORDER BY 1

-- name: rate_limit_take
SELECT * FROM orch_rate_limit_take($1, $2, $3, $4, $5)

-- name: breaker_state_counts
SELECT current_state, count(*) AS n FROM circuit_breakers GROUP BY current_state

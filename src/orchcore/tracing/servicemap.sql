-- Named queries of the service map (orchcore.tracing.servicemap). Time comes in as
-- parameters from the engine's clock; the window is ($1, $2].

-- name: map_services
-- Every registered service with its live instances counted by status.
SELECT s.service_name, s.service_type, s.base_url, s.is_active,
       count(i.id) AS live_instances,
       count(i.id) FILTER (WHERE i.status = 'healthy') AS healthy_instances
FROM microservices s
LEFT JOIN service_instances i
       ON i.microservice_id = s.id AND i.status IN ('starting', 'healthy', 'unhealthy', 'critical')
GROUP BY s.id
ORDER BY s.service_name

-- name: map_declared_dependencies
-- What active services declare they depend on (the target may not be registered yet).
SELECT s.service_name AS source, d.target_service_name AS target
FROM service_dependencies d JOIN microservices s ON s.id = d.source_service_id
WHERE s.is_active
ORDER BY 1, 2

-- name: map_observed_connections
-- Calls in the window, per (source, target). Two sources, never the same call twice:
-- service_events holds every attempt orch made (one row each, unsampled, so its counts
-- are exact; a refusal never reached the target and is not a request, as the breakers
-- count it); distributed_traces adds the client spans services exported themselves
-- (tagged peer.service), leaving out orch's own client spans (tagged orch.call.attempt),
-- which are sampled copies of rows already counted from service_events.
-- A failure is what the breakers call one: an error, a timeout, or a 5xx answer.
WITH calls AS (
    SELECT e.source_service AS source, e.target_service AS target,
           (e.event_type IN ('error', 'timeout') OR coalesce(e.status_code, 0) >= 500) AS failed,
           e.duration_ms::double precision AS latency_ms
    FROM service_events e
    WHERE e.created_at > $1 AND e.created_at <= $2
      AND e.target_service IS NOT NULL AND e.event_type <> 'rejected'
    UNION ALL
    SELECT t.service_name, t.tags->>'peer.service', t.status_code = 'error',
           t.duration_microseconds / 1000.0
    FROM distributed_traces t
    WHERE t.start_time > $1 AND t.start_time <= $2
      AND t.span_kind = 'client'
      AND jsonb_typeof(t.tags->'peer.service') = 'string'
      AND NOT t.tags ? 'orch.call.attempt'
)
SELECT source, target,
       count(*) AS request_count,
       count(*) FILTER (WHERE failed) AS error_count,
       count(latency_ms) AS latency_samples,
       coalesce(avg(latency_ms), 0)::double precision AS avg_latency_ms
FROM calls
WHERE source <> '' AND target <> ''
GROUP BY source, target
ORDER BY source, target

-- name: map_workflow_initiators
-- Services that started a workflow in the window: entry points of critical paths.
SELECT DISTINCT initiating_service FROM distributed_workflows
WHERE started_at > $1 AND started_at <= $2
ORDER BY 1

-- Named queries of the service registry. Time always comes in as a parameter
-- (the engine's clock), never from now(), so tests can drive it.

-- name: list_services
SELECT s.*, COALESCE(counts.by_status, '{}'::jsonb) AS instance_counts
FROM microservices s
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(status, n) AS by_status
    FROM (SELECT status, count(*) AS n FROM service_instances i
          WHERE i.microservice_id = s.id GROUP BY status) per_status
) counts ON true
WHERE ($1::text IS NULL OR s.deployment_environment = $1)
  AND (s.is_active OR $2::boolean)
ORDER BY s.service_name

-- name: service_by_id
SELECT s.*, COALESCE(counts.by_status, '{}'::jsonb) AS instance_counts
FROM microservices s
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(status, n) AS by_status
    FROM (SELECT status, count(*) AS n FROM service_instances i
          WHERE i.microservice_id = s.id GROUP BY status) per_status
) counts ON true
WHERE s.id = $1

-- name: service_id_by_name
SELECT id FROM microservices WHERE service_name = $1

-- name: service_id_by_id
SELECT id FROM microservices WHERE id = $1

-- name: service_name_by_id
SELECT service_name FROM microservices WHERE id = $1

-- name: service_is_active
SELECT is_active FROM microservices WHERE id = $1

-- name: lock_service
SELECT * FROM microservices WHERE id = $1 FOR UPDATE

-- name: insert_service
-- A deactivated service of the same name is brought back; an active one is a conflict.
INSERT INTO microservices AS m (
    service_name, service_version, service_type, service_description, deployment_environment,
    base_url, health_check_endpoint, metrics_endpoint, documentation_url, owner_team,
    dependencies, configuration_schema, resource_requirements, scaling_config,
    health_check, load_balancing, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)
ON CONFLICT (service_name) DO UPDATE SET
    service_version = EXCLUDED.service_version,
    service_type = EXCLUDED.service_type,
    service_description = EXCLUDED.service_description,
    deployment_environment = EXCLUDED.deployment_environment,
    base_url = EXCLUDED.base_url,
    health_check_endpoint = EXCLUDED.health_check_endpoint,
    metrics_endpoint = EXCLUDED.metrics_endpoint,
    documentation_url = EXCLUDED.documentation_url,
    owner_team = EXCLUDED.owner_team,
    dependencies = EXCLUDED.dependencies,
    configuration_schema = EXCLUDED.configuration_schema,
    resource_requirements = EXCLUDED.resource_requirements,
    scaling_config = EXCLUDED.scaling_config,
    health_check = EXCLUDED.health_check,
    load_balancing = EXCLUDED.load_balancing,
    is_active = true,
    deactivated_at = NULL,
    updated_at = EXCLUDED.updated_at
    WHERE m.is_active = false
RETURNING id, (xmax = 0) AS inserted

-- name: update_service
UPDATE microservices SET
    service_version = $2, service_type = $3, service_description = $4,
    deployment_environment = $5, base_url = $6, health_check_endpoint = $7,
    metrics_endpoint = $8, documentation_url = $9, owner_team = $10, dependencies = $11,
    configuration_schema = $12, resource_requirements = $13, scaling_config = $14,
    health_check = $15, load_balancing = $16, updated_at = $17
WHERE id = $1

-- name: deactivate_service
UPDATE microservices SET is_active = false, deactivated_at = $2, updated_at = $2
WHERE id = $1 AND is_active
RETURNING id

-- name: add_dependencies
INSERT INTO service_dependencies (source_service_id, target_service_name, target_service_id)
SELECT $1, name, (SELECT id FROM microservices WHERE service_name = name)
FROM unnest($2::text[]) AS name
ON CONFLICT (source_service_id, target_service_name) DO NOTHING

-- name: remove_dependencies_not_in
DELETE FROM service_dependencies
WHERE source_service_id = $1 AND NOT (target_service_name = ANY($2::text[]))

-- name: resolve_dependencies_on
-- Dependencies declared before their target registered now point at it.
UPDATE service_dependencies SET target_service_id = $1, updated_at = $3
WHERE target_service_name = $2 AND target_service_id IS DISTINCT FROM $1

-- name: dependencies_of
SELECT d.target_service_name AS service_name, d.target_service_id IS NOT NULL AS registered,
       d.dependency_type, d.is_critical
FROM service_dependencies d
WHERE d.source_service_id = $1
ORDER BY d.target_service_name

-- name: dependents_of
SELECT s.service_name
FROM service_dependencies d JOIN microservices s ON s.id = d.source_service_id
WHERE d.target_service_name = $1
ORDER BY s.service_name

-- name: instances_of_service
SELECT i.*, s.service_name
FROM service_instances i JOIN microservices s ON s.id = i.microservice_id
WHERE i.microservice_id = $1
  AND ($2::boolean OR i.status NOT IN ('terminating', 'deregistered'))
ORDER BY i.instance_id

-- name: instance_by_instance_id
SELECT i.*, s.service_name
FROM service_instances i JOIN microservices s ON s.id = i.microservice_id
WHERE i.instance_id = $1

-- name: lock_instance
SELECT i.*, s.service_name, s.health_check
FROM service_instances i JOIN microservices s ON s.id = i.microservice_id
WHERE i.instance_id = $1
FOR UPDATE OF i

-- name: insert_instance
INSERT INTO service_instances (
    microservice_id, instance_id, node_name, ip_address, port, version, metadata,
    status, started_at, last_seen_at, status_changed_at, next_check_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'starting', $8, $8, $8, $8, $8, $8)
RETURNING id

-- name: reregister_instance
-- The same instance registering again: a new address or a comeback restarts it.
UPDATE service_instances SET
    node_name = $2, ip_address = $3, port = $4, version = $5, metadata = $6,
    status = $7, last_seen_at = $8, updated_at = $8, next_check_at = $8,
    status_changed_at = CASE WHEN status <> $7 THEN $8 ELSE status_changed_at END,
    started_at = CASE WHEN status <> $7 THEN $8 ELSE started_at END,
    health_check_failures = CASE WHEN status <> $7 THEN 0 ELSE health_check_failures END,
    health_check_successes = CASE WHEN status <> $7 THEN 0 ELSE health_check_successes END,
    unhealthy_since = CASE WHEN status <> $7 THEN NULL ELSE unhealthy_since END,
    deregistered_at = NULL
WHERE id = $1

-- name: set_instance_status
UPDATE service_instances SET
    status = $2, status_changed_at = $3, updated_at = $3,
    unhealthy_since = CASE WHEN $2 IN ('unhealthy', 'critical')
                           THEN COALESCE(unhealthy_since, $3) END,
    deregistered_at = CASE WHEN $2 IN ('terminating', 'deregistered') THEN $3 END,
    check_lease_owner = NULL, check_lease_until = NULL
WHERE id = $1 AND status = $4
RETURNING id

-- name: insert_state_event
INSERT INTO instance_state_events
    (instance_uuid, microservice_id, from_status, to_status, reason, actor, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: record_heartbeat
UPDATE service_instances SET
    last_seen_at = $2, updated_at = $2,
    resource_usage = COALESCE($3, resource_usage),
    next_check_at = CASE WHEN $4::float IS NULL THEN next_check_at
                         ELSE $2::timestamptz + make_interval(secs => $4) END,
    health_check_failures = CASE WHEN $4::float IS NULL THEN health_check_failures ELSE 0 END,
    last_check_result = CASE WHEN $4::float IS NULL THEN last_check_result ELSE 'passing' END,
    last_check_output = CASE WHEN $4::float IS NULL THEN last_check_output
                             ELSE 'TTL heartbeat' END,
    last_health_check = CASE WHEN $4::float IS NULL THEN last_health_check ELSE $2 END
WHERE id = $1

-- name: deregister_instances_of_service
SELECT i.id, i.microservice_id, i.status
FROM service_instances i
WHERE i.microservice_id = $1 AND i.status NOT IN ('terminating', 'deregistered')
FOR UPDATE

-- name: instance_events
SELECT e.*, i.instance_id
FROM instance_state_events e JOIN service_instances i ON i.id = e.instance_uuid
WHERE e.instance_uuid = $1
ORDER BY e.occurred_at DESC, e.id DESC
LIMIT $2

-- name: recent_service_events
SELECT e.*, i.instance_id
FROM instance_state_events e JOIN service_instances i ON i.id = e.instance_uuid
WHERE e.microservice_id = $1
ORDER BY e.occurred_at DESC, e.id DESC
LIMIT $2

-- name: instance_counts
SELECT status, count(*) AS n
FROM service_instances i JOIN microservices s ON s.id = i.microservice_id
WHERE s.is_active
GROUP BY status

-- name: claim_due_checks
-- Take up to $3 instances whose check is due and not leased by a live checker. The
-- next check is scheduled at claim time, so no other daemon checks the same
-- instance in this interval; the lease covers a checker that dies mid-check.
WITH due AS (
    SELECT i.id
    FROM service_instances i
    WHERE i.status IN ('starting', 'healthy', 'unhealthy', 'critical')
      AND i.next_check_at <= $1
      AND (i.check_lease_until IS NULL OR i.check_lease_until < $1)
    ORDER BY i.next_check_at
    LIMIT $3
    FOR UPDATE OF i SKIP LOCKED
)
UPDATE service_instances i SET
    check_lease_owner = $2,
    check_lease_until = $1 + make_interval(
        secs => COALESCE((s.health_check->>'timeout_seconds')::float, 5) + $4),
    next_check_at = $1 + make_interval(
        secs => COALESCE((s.health_check->>'interval_seconds')::float, 10))
FROM due, microservices s
WHERE i.id = due.id AND s.id = i.microservice_id
RETURNING i.id, i.microservice_id, i.instance_id, i.ip_address, i.port, i.status,
          i.health_check_failures, i.health_check_successes, i.last_check_result,
          i.unhealthy_since, i.last_seen_at,
          s.service_name, s.base_url, s.health_check_endpoint, s.health_check

-- name: record_check_result
-- Applies a check verdict if this checker still holds the lease and nothing else
-- (an operator, a heartbeat) changed the instance meanwhile.
UPDATE service_instances SET
    status = $2,
    health_check_failures = $3,
    health_check_successes = $4,
    last_check_result = $5,
    last_check_output = $6,
    last_health_check = $7,
    unhealthy_since = $8,
    status_changed_at = CASE WHEN status <> $2 THEN $7 ELSE status_changed_at END,
    deregistered_at = CASE WHEN $2 = 'deregistered' THEN $7 END,
    last_seen_at = CASE WHEN $5 = 'passing' AND $11 THEN $7 ELSE last_seen_at END,
    check_lease_owner = NULL,
    check_lease_until = NULL,
    updated_at = $7
WHERE id = $1 AND check_lease_owner = $9 AND status = $10
  AND ($12::timestamptz IS NULL OR last_seen_at = $12)
RETURNING id

-- name: release_check_leases
UPDATE service_instances SET check_lease_owner = NULL, check_lease_until = NULL,
    next_check_at = LEAST(next_check_at, $2)
WHERE check_lease_owner = $1

-- name: next_due_check
SELECT min(next_check_at) FROM service_instances
WHERE status IN ('starting', 'healthy', 'unhealthy', 'critical')

-- name: reschedule_check
UPDATE service_instances SET next_check_at = $3, check_lease_owner = NULL, check_lease_until = NULL
WHERE id = $1 AND check_lease_owner = $2

-- name: discovery_services
SELECT id, service_name, load_balancing, is_active, base_url FROM microservices

-- name: discovery_service_by_id
SELECT id, service_name, load_balancing, is_active, base_url FROM microservices WHERE id = $1

-- name: discovery_service_by_name
SELECT id, service_name, load_balancing, is_active, base_url FROM microservices
WHERE service_name = $1

-- name: discovery_instances
SELECT id, microservice_id, instance_id, ip_address, port, status, version, metadata
FROM service_instances
WHERE status IN ('starting', 'healthy', 'unhealthy', 'critical')

-- name: discovery_instances_of
SELECT id, microservice_id, instance_id, ip_address, port, status, version, metadata
FROM service_instances
WHERE status IN ('starting', 'healthy', 'unhealthy', 'critical') AND microservice_id = ANY($1::uuid[])

-- name: resource_usage_of_live_instances
SELECT microservice_id, resource_usage FROM service_instances
WHERE status IN ('starting', 'healthy', 'unhealthy', 'critical')
  AND resource_usage IS NOT NULL AND resource_usage <> '{}'::jsonb

-- Named queries of mesh policies.

-- name: all_policies
SELECT * FROM service_mesh_policies ORDER BY priority DESC, policy_name

-- name: policy_by_id
SELECT * FROM service_mesh_policies WHERE id = $1

-- name: policy_by_name
SELECT * FROM service_mesh_policies WHERE policy_name = $1

-- name: insert_policy
INSERT INTO service_mesh_policies (policy_name, policy_type, source_services, target_services,
    policy_config, is_enabled, priority, created_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
ON CONFLICT (policy_name) DO NOTHING
RETURNING *

-- name: update_policy
UPDATE service_mesh_policies SET policy_type = $2, source_services = $3, target_services = $4,
    policy_config = $5, is_enabled = $6, priority = $7, updated_at = $8
WHERE id = $1
RETURNING *

-- name: set_policy_enabled
UPDATE service_mesh_policies SET is_enabled = $2, updated_at = $3 WHERE id = $1 RETURNING *

-- name: delete_policy
DELETE FROM service_mesh_policies WHERE id = $1 RETURNING *

-- name: mark_applied
UPDATE service_mesh_policies SET last_applied_at = $2, last_applied_by = $3 WHERE id = $1

-- name: live_instances_by_service
SELECT s.service_name, count(i.id) FILTER (
           WHERE i.status IN ('starting', 'healthy', 'unhealthy', 'critical')) AS live,
       count(i.id) FILTER (WHERE i.status = 'healthy') AS healthy
FROM microservices s LEFT JOIN service_instances i ON i.microservice_id = s.id
WHERE s.is_active
GROUP BY s.service_name

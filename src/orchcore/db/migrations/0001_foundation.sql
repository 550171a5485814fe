-- orch foundation schema: the seed's tables made valid for plain PostgreSQL 15+,
-- plus what the registry, auth, audit and daemon membership need.
-- auth.users references became TEXT actor names: operators and tokens are orch's own.


-- Service Registry and Discovery ------------------------------------------------

CREATE TABLE microservices (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name TEXT NOT NULL UNIQUE,
    service_version TEXT NOT NULL DEFAULT '1.0.0',
    service_description TEXT,
    service_type TEXT NOT NULL,
    deployment_environment TEXT NOT NULL,
    base_url TEXT,
    health_check_endpoint TEXT DEFAULT '/health',
    metrics_endpoint TEXT DEFAULT '/metrics',
    documentation_url TEXT,
    owner_team TEXT,
    dependencies JSONB DEFAULT '[]',
    configuration_schema JSONB DEFAULT '{}',
    resource_requirements JSONB DEFAULT '{}',
    scaling_config JSONB DEFAULT '{}',
    -- orch: how instances are checked and picked
    health_check JSONB NOT NULL DEFAULT '{}',
    load_balancing TEXT NOT NULL DEFAULT 'round_robin',
    is_active BOOLEAN DEFAULT true,
    deactivated_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    CONSTRAINT microservices_type_check
        CHECK (service_type IN ('api', 'worker', 'scheduler', 'gateway')),
    CONSTRAINT microservices_lb_check
        CHECK (load_balancing IN ('round_robin', 'least_connections', 'weighted'))
);

CREATE TABLE service_instances (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    microservice_id UUID NOT NULL REFERENCES microservices(id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL UNIQUE,
    node_name TEXT,
    ip_address INET NOT NULL,
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    status TEXT NOT NULL DEFAULT 'starting',
    version TEXT NOT NULL,
    metadata JSONB DEFAULT '{}',
    resource_usage JSONB DEFAULT '{}',
    last_health_check TIMESTAMPTZ,
    health_check_failures INTEGER DEFAULT 0,
    started_at TIMESTAMPTZ DEFAULT now(),
    last_seen_at TIMESTAMPTZ DEFAULT now(),
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    -- orch: health checking state
    health_check_successes INTEGER NOT NULL DEFAULT 0,
    last_check_result TEXT,
    last_check_output TEXT,
    status_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    unhealthy_since TIMESTAMPTZ,
    next_check_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    check_lease_owner UUID,
    check_lease_until TIMESTAMPTZ,
    deregistered_at TIMESTAMPTZ,
    CONSTRAINT service_instances_status_check CHECK (status IN
        ('starting', 'healthy', 'unhealthy', 'critical', 'terminating', 'deregistered')),
    CONSTRAINT service_instances_check_result_check
        CHECK (last_check_result IS NULL OR last_check_result IN ('passing', 'warning', 'failing'))
);

-- Every status change of an instance, with when and why.
CREATE TABLE instance_state_events (
    id BIGSERIAL PRIMARY KEY,
    instance_uuid UUID NOT NULL REFERENCES service_instances(id) ON DELETE CASCADE,
    microservice_id UUID NOT NULL REFERENCES microservices(id) ON DELETE CASCADE,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Service Mesh Configuration ------------------------------------------------------

CREATE TABLE service_mesh_policies (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    policy_name TEXT NOT NULL UNIQUE,
    policy_type TEXT NOT NULL,
    source_services JSONB DEFAULT '[]',
    target_services JSONB DEFAULT '[]',
    policy_config JSONB NOT NULL,
    is_enabled BOOLEAN DEFAULT true,
    priority INTEGER DEFAULT 0,
    created_by TEXT,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    CONSTRAINT service_mesh_policies_type_check
        CHECK (policy_type IN ('traffic', 'security', 'observability', 'resilience'))
);

-- Workflow Orchestration (Saga Pattern) -------------------------------------------

CREATE TABLE distributed_workflows (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_name TEXT NOT NULL,
    workflow_version TEXT DEFAULT '1.0.0',
    workflow_definition JSONB NOT NULL,
    correlation_id TEXT UNIQUE,
    wedding_id UUID,
    initiating_service TEXT NOT NULL,
    current_status TEXT DEFAULT 'pending',
    current_step INTEGER DEFAULT 0,
    total_steps INTEGER NOT NULL,
    context_data JSONB DEFAULT '{}',
    compensation_stack JSONB DEFAULT '[]',
    error_details JSONB,
    started_at TIMESTAMPTZ DEFAULT now(),
    completed_at TIMESTAMPTZ,
    timeout_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE workflow_steps (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_id UUID REFERENCES distributed_workflows(id) ON DELETE CASCADE,
    step_name TEXT NOT NULL,
    step_type TEXT NOT NULL,
    step_order INTEGER NOT NULL,
    service_name TEXT,
    service_endpoint TEXT,
    input_data JSONB DEFAULT '{}',
    output_data JSONB,
    compensation_action JSONB,
    status TEXT DEFAULT 'pending',
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    timeout_seconds INTEGER DEFAULT 30,
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error_message TEXT,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now()
);

-- Inter-Service Communication Events ------------------------------------------------

CREATE TABLE service_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    source_service TEXT NOT NULL,
    target_service TEXT,
    method TEXT,
    endpoint TEXT,
    request_data JSONB,
    response_data JSONB,
    status_code INTEGER,
    duration_ms INTEGER,
    error_message TEXT,
    correlation_id TEXT,
    user_id TEXT,
    session_id TEXT,
    ip_address INET,
    user_agent TEXT,
    headers JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT now()
);

-- Circuit Breaker State Management --------------------------------------------------

CREATE TABLE circuit_breakers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name TEXT NOT NULL,
    target_service TEXT NOT NULL,
    endpoint_pattern TEXT DEFAULT '*',
    current_state TEXT DEFAULT 'closed',
    failure_threshold INTEGER DEFAULT 5,
    success_threshold INTEGER DEFAULT 3,
    timeout_duration INTEGER DEFAULT 60,
    failure_count INTEGER DEFAULT 0,
    success_count INTEGER DEFAULT 0,
    last_failure_at TIMESTAMPTZ,
    state_changed_at TIMESTAMPTZ DEFAULT now(),
    next_attempt_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    UNIQUE (service_name, target_service, endpoint_pattern)
);

-- Service Configuration Management ---------------------------------------------------

CREATE TABLE service_configurations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    microservice_id UUID REFERENCES microservices(id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    config_version TEXT NOT NULL,
    configuration JSONB NOT NULL,
    secrets_refs JSONB DEFAULT '[]',
    is_active BOOLEAN DEFAULT false,
    is_encrypted BOOLEAN DEFAULT false,
    checksum TEXT,
    applied_at TIMESTAMPTZ,
    created_by TEXT,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    UNIQUE (microservice_id, environment, config_version)
);

-- Service Dependency Graph ------------------------------------------------------------
-- A dependency is declared by name, so it can point at a service that registers later;
-- target_service_id is filled in when (and if) the target exists.

CREATE TABLE service_dependencies (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_service_id UUID NOT NULL REFERENCES microservices(id) ON DELETE CASCADE,
    target_service_id UUID REFERENCES microservices(id) ON DELETE SET NULL,
    target_service_name TEXT NOT NULL,
    dependency_type TEXT NOT NULL DEFAULT 'synchronous',
    is_critical BOOLEAN DEFAULT false,
    circuit_breaker_enabled BOOLEAN DEFAULT true,
    timeout_ms INTEGER DEFAULT 5000,
    retry_policy JSONB DEFAULT '{}',
    fallback_strategy TEXT,
    monitoring_enabled BOOLEAN DEFAULT true,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now(),
    UNIQUE (source_service_id, target_service_name),
    CONSTRAINT service_dependencies_type_check
        CHECK (dependency_type IN ('synchronous', 'asynchronous', 'database', 'cache'))
);

-- Message Queue and Event Bus -----------------------------------------------------------

CREATE TABLE message_queues (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_name TEXT NOT NULL UNIQUE,
    queue_type TEXT NOT NULL,
    message_pattern TEXT,
    producer_services JSONB DEFAULT '[]',
    consumer_services JSONB DEFAULT '[]',
    retention_hours INTEGER DEFAULT 168,
    max_message_size INTEGER DEFAULT 1048576,
    dlq_enabled BOOLEAN DEFAULT true,
    dlq_max_retries INTEGER DEFAULT 3,
    monitoring_config JSONB DEFAULT '{}',
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMPTZ DEFAULT now(),
    updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE TABLE message_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_name TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    correlation_id TEXT,
    trace_id TEXT,
    producer_service TEXT NOT NULL,
    consumer_service TEXT,
    message_type TEXT NOT NULL,
    message_payload JSONB,
    headers JSONB DEFAULT '{}',
    status TEXT DEFAULT 'produced',
    retry_count INTEGER DEFAULT 0,
    processing_time_ms INTEGER,
    error_message TEXT,
    produced_at TIMESTAMPTZ DEFAULT now(),
    consumed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT now()
);

-- Service Metrics and Observability --------------------------------------------------------

CREATE TABLE service_metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name TEXT NOT NULL,
    instance_id UUID REFERENCES service_instances(id) ON DELETE SET NULL,
    metric_name TEXT NOT NULL,
    metric_type TEXT NOT NULL,
    metric_value NUMERIC NOT NULL,
    metric_labels JSONB DEFAULT '{}',
    time_bucket TIMESTAMPTZ NOT NULL,
    bucket_size TEXT NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now()
);

-- Distributed Tracing ------------------------------------------------------------------------

CREATE TABLE distributed_traces (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    operation_name TEXT NOT NULL,
    service_name TEXT NOT NULL,
    span_kind TEXT DEFAULT 'internal',
    status_code TEXT DEFAULT 'ok',
    start_time TIMESTAMPTZ NOT NULL,
    end_time TIMESTAMPTZ,
    duration_microseconds INTEGER,
    tags JSONB DEFAULT '{}',
    logs JSONB DEFAULT '[]',
    baggage JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT now()
);

-- orch's own: tokens, audit, daemon membership -----------------------------------------------

CREATE TABLE operators (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    operator_name TEXT NOT NULL UNIQUE,
    display_name TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    token_name TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    token_sha256 BYTEA NOT NULL UNIQUE,
    role TEXT NOT NULL,
    service_name TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    revoked_by TEXT,
    CONSTRAINT api_tokens_role_check CHECK (role IN
        ('system_admin', 'platform_engineer', 'monitoring_system', 'service')),
    CONSTRAINT api_tokens_service_scope_check
        CHECK ((role = 'service') = (service_name IS NOT NULL))
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    reason TEXT,
    details JSONB NOT NULL DEFAULT '{}',
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orch_daemons (
    id UUID PRIMARY KEY,
    daemon_name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    listen TEXT,
    version TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    stopped_at TIMESTAMPTZ
);

-- Indexes ----------------------------------------------------------------------------------------

CREATE INDEX idx_service_instances_microservice ON service_instances(microservice_id);
CREATE INDEX idx_service_instances_status ON service_instances(status);
CREATE INDEX idx_service_instances_due ON service_instances(next_check_at)
    WHERE status NOT IN ('deregistered', 'terminating');
CREATE INDEX idx_instance_state_events_instance ON instance_state_events(instance_uuid, occurred_at DESC);
CREATE INDEX idx_service_events_trace_id ON service_events(trace_id);
CREATE INDEX idx_service_events_source_service ON service_events(source_service);
CREATE INDEX idx_service_events_created_at ON service_events(created_at DESC);
CREATE INDEX idx_workflow_steps_workflow_id ON workflow_steps(workflow_id);
CREATE INDEX idx_workflow_steps_status ON workflow_steps(status);
CREATE INDEX idx_circuit_breakers_service_target ON circuit_breakers(service_name, target_service);
CREATE INDEX idx_service_metrics_service_time ON service_metrics(service_name, time_bucket DESC);
CREATE INDEX idx_message_logs_queue_status ON message_logs(queue_name, status);
CREATE INDEX idx_distributed_traces_trace_id ON distributed_traces(trace_id);
CREATE INDEX idx_distributed_traces_service_start ON distributed_traces(service_name, start_time);
CREATE INDEX idx_distributed_traces_trace_service ON distributed_traces(trace_id, service_name);
CREATE INDEX idx_service_dependencies_target_name ON service_dependencies(target_service_name);
CREATE INDEX idx_audit_log_target ON audit_log(target_kind, target_id, occurred_at DESC);

-- Live updates ------------------------------------------------------------------------------------
-- One channel, 'orch', carries a small JSON payload naming what changed. Instances
-- notify only when what discovery and the console show changes, not on every check.

CREATE FUNCTION orch_notify_service() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data microservices;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'service', 'op', lower(TG_OP),
        'service_id', row_data.id, 'service_name', row_data.service_name)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER microservices_notify AFTER INSERT OR UPDATE OR DELETE ON microservices
    FOR EACH ROW EXECUTE FUNCTION orch_notify_service();

CREATE FUNCTION orch_notify_instance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data service_instances;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.status IS NOT DISTINCT FROM NEW.status
       AND OLD.ip_address IS NOT DISTINCT FROM NEW.ip_address
       AND OLD.port IS NOT DISTINCT FROM NEW.port
       AND OLD.metadata IS NOT DISTINCT FROM NEW.metadata
       AND OLD.last_check_result IS NOT DISTINCT FROM NEW.last_check_result THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'instance', 'op', lower(TG_OP),
        'service_id', row_data.microservice_id, 'id', row_data.id,
        'status', row_data.status)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER service_instances_notify AFTER INSERT OR UPDATE OR DELETE ON service_instances
    FOR EACH ROW EXECUTE FUNCTION orch_notify_instance();

-- Durable sagas: a definitions registry, workflow scheduling and leases, step state for
-- forward and compensating work, the execution timeline, and alerts.

CREATE TABLE workflow_definitions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow_name TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    definition JSONB NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workflow_name, workflow_version)
);

UPDATE distributed_workflows SET current_status = 'pending' WHERE current_status IS NULL;
ALTER TABLE distributed_workflows
    ALTER COLUMN current_status SET NOT NULL,
    ADD CONSTRAINT distributed_workflows_status_check CHECK (current_status IN (
        'pending', 'running', 'retrying', 'paused', 'compensating', 'compensated',
        'completed', 'failed', 'compensation_failed', 'cancelled')),
    ADD COLUMN definition_id UUID REFERENCES workflow_definitions(id),
    ADD COLUMN phase TEXT NOT NULL DEFAULT 'forward'
        CHECK (phase IN ('forward', 'compensate')),
    ADD COLUMN next_run_at TIMESTAMPTZ,
    ADD COLUMN lease_owner TEXT,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN paused_from TEXT,
    ADD COLUMN compensation_request JSONB,
    ADD COLUMN trace_id TEXT,
    ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

-- Runnable work, in due order: what daemons claim.
CREATE INDEX idx_distributed_workflows_due ON distributed_workflows(next_run_at)
    WHERE current_status IN ('pending', 'running', 'retrying', 'compensating');
CREATE INDEX idx_distributed_workflows_status ON distributed_workflows(current_status);
CREATE INDEX idx_distributed_workflows_name ON distributed_workflows(workflow_name, started_at DESC);
CREATE INDEX idx_distributed_workflows_wedding ON distributed_workflows(wedding_id);
CREATE INDEX idx_distributed_workflows_started ON distributed_workflows(started_at DESC);

UPDATE workflow_steps SET status = 'pending' WHERE status IS NULL;
ALTER TABLE workflow_steps
    ALTER COLUMN workflow_id SET NOT NULL,
    ALTER COLUMN status SET NOT NULL,
    ADD CONSTRAINT workflow_steps_status_check CHECK (status IN (
        'pending', 'running', 'retrying', 'waiting', 'completed', 'failed', 'skipped',
        'compensated', 'cancelled')),
    ADD COLUMN parent_step TEXT,
    ADD COLUMN branch_name TEXT,
    ADD COLUMN step_definition JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN idempotency_key TEXT,
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    ADD COLUMN completion_seq INTEGER,
    ADD COLUMN compensation_status TEXT CHECK (compensation_status IN (
        'pending', 'running', 'retrying', 'completed', 'failed', 'manual', 'not_needed')),
    ADD COLUMN compensation_attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN compensation_error TEXT,
    ADD COLUMN compensation_next_attempt_at TIMESTAMPTZ,
    ADD COLUMN compensated_at TIMESTAMPTZ,
    ADD CONSTRAINT workflow_steps_unique_name UNIQUE (workflow_id, step_name);

-- Every event of a workflow, in order: the execution timeline.
CREATE TABLE workflow_events (
    id BIGSERIAL PRIMARY KEY,
    workflow_id UUID NOT NULL REFERENCES distributed_workflows(id) ON DELETE CASCADE,
    step_name TEXT,
    event TEXT NOT NULL,
    details JSONB NOT NULL DEFAULT '{}',
    actor TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_workflow_events_workflow ON workflow_events(workflow_id, id);

-- Things that need a person.
CREATE TABLE alerts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    kind TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    title TEXT NOT NULL,
    details JSONB NOT NULL DEFAULT '{}',
    raised_at TIMESTAMPTZ NOT NULL,
    acknowledged_at TIMESTAMPTZ,
    acknowledged_by TEXT,
    resolved_at TIMESTAMPTZ,
    resolved_by TEXT
);
CREATE INDEX idx_alerts_open ON alerts(raised_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX idx_alerts_subject ON alerts(subject_kind, subject_id);

-- Live updates: status changes, and work becoming claimable, wake daemons and consoles.
CREATE FUNCTION orch_notify_workflow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.current_status IS NOT DISTINCT FROM NEW.current_status
       AND OLD.current_step IS NOT DISTINCT FROM NEW.current_step
       AND NOT (OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL)
       AND OLD.next_run_at IS NOT DISTINCT FROM NEW.next_run_at THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'workflow', 'op', lower(TG_OP), 'id', NEW.id,
        'name', NEW.workflow_name, 'status', NEW.current_status,
        'claimable', NEW.current_status IN ('pending', 'running', 'retrying', 'compensating')
                     AND NEW.lease_owner IS NULL,
        'next_run_at', NEW.next_run_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER distributed_workflows_notify AFTER INSERT OR UPDATE ON distributed_workflows
    FOR EACH ROW EXECUTE FUNCTION orch_notify_workflow();

CREATE FUNCTION orch_notify_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'alert', 'op', lower(TG_OP), 'id', NEW.id, 'kind', NEW.kind,
        'severity', NEW.severity)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_notify AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION orch_notify_alert();

-- Trust: steps whose outcome is unknown, idempotency generations, operator actions that
-- reach a workflow while a daemon drives it, and drive crashes counted per workflow.
--
-- Deploy-safe: every new column has a constant default (no rewrite), the wider status
-- CHECK admits every value the narrower one did, and daemons of the previous version
-- neither write nor read what is new here.

-- A step whose request may have reached its service without an answer coming back
-- (timed out, connection lost) ends 'uncertain' rather than 'failed': it may have taken
-- effect, so compensation includes it.
ALTER TABLE workflow_steps
    DROP CONSTRAINT workflow_steps_status_check,
    ADD CONSTRAINT workflow_steps_status_check CHECK (status IN (
        'pending', 'running', 'retrying', 'waiting', 'completed', 'failed', 'uncertain',
        'skipped', 'compensated', 'cancelled'));

ALTER TABLE workflow_steps
    -- An operator's retry of a step that failed starts a new generation: a new
    -- idempotency key, so a service that stored its first answer does not replay it.
    ADD COLUMN generation INTEGER NOT NULL DEFAULT 1,
    -- Some attempt of this generation may have reached the service unanswered.
    ADD COLUMN outcome_unknown BOOLEAN NOT NULL DEFAULT false,
    -- When the attempt in flight ends at the latest (its timeout), for operators.
    ADD COLUMN attempt_deadline TIMESTAMPTZ;

ALTER TABLE distributed_workflows
    -- Drives of this workflow that ended in an unexpected error, in a row.
    ADD COLUMN drive_crashes INTEGER NOT NULL DEFAULT 0,
    -- Written by every commit: after a commit whose acknowledgement was lost with the
    -- connection, the committer can tell whether it landed.
    ADD COLUMN commit_id UUID;

-- Operator actions on a workflow a daemon holds: applied by that daemon at its next
-- commit (after the call in flight), by whoever claims the workflow next if it dies.
CREATE TABLE workflow_commands (
    id BIGSERIAL PRIMARY KEY,
    workflow_id UUID NOT NULL REFERENCES distributed_workflows(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    params JSONB NOT NULL DEFAULT '{}',
    actor TEXT NOT NULL,
    reason TEXT,
    requested_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'refused')),
    outcome TEXT,
    settled_at TIMESTAMPTZ,
    settled_by TEXT
);
CREATE INDEX idx_workflow_commands_pending ON workflow_commands(workflow_id, id)
    WHERE state = 'pending';

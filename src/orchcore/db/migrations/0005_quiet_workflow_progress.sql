-- Workflows notify by themselves only when they become claimable: that is what wakes
-- a daemon. Every NOTIFY wakes each session listening in the database (PostgreSQL
-- signals all of them whatever the channel), and each wake-up is a transaction on
-- the server: notifying every step of every saga cost each daemon and console a
-- commit a step. A driving daemon now announces its progress at most every half
-- second (SagaRunner), and operator actions announce themselves (WorkflowStore).
-- Replacing the function is safe while older daemons run: they acted only on
-- notifications of claimable work, which are unchanged.
CREATE OR REPLACE FUNCTION orch_notify_workflow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (NEW.current_status IN ('pending', 'running', 'retrying', 'compensating')
            AND NEW.lease_owner IS NULL) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.current_status IS NOT DISTINCT FROM NEW.current_status
       AND OLD.current_step IS NOT DISTINCT FROM NEW.current_step
       AND NOT (OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL)
       AND OLD.next_run_at IS NOT DISTINCT FROM NEW.next_run_at THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('orch', json_build_object(
        'topic', 'workflow', 'op', lower(TG_OP), 'id', NEW.id,
        'name', NEW.workflow_name, 'status', NEW.current_status, 'claimable', true,
        'next_run_at', NEW.next_run_at)::text);
    RETURN NULL;
END $$;

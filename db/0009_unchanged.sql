-- A build whose output is the live version's, file for file, makes no new version: 'unchanged'.
ALTER TABLE deployments DROP CONSTRAINT deployments_state_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_state_check
    CHECK (state IN ('queued', 'building', 'ready', 'failed', 'unchanged'));

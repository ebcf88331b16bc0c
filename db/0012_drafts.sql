-- Drafts (issue 14): a deployment published without going live keeps its config version as
-- 'draft' until a promote makes it live through the same switch as a rollback ('promote').
ALTER TABLE config_versions DROP CONSTRAINT config_versions_status_check;
ALTER TABLE config_versions ADD CONSTRAINT config_versions_status_check
    CHECK (status IN ('pending', 'active', 'inactive', 'failed', 'pruned', 'draft'));
ALTER TABLE activations DROP CONSTRAINT activations_action_check;
ALTER TABLE activations ADD CONSTRAINT activations_action_check
    CHECK (action IN ('deploy', 'rollback', 'delete', 'expire', 'promote'));

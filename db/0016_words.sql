-- Issue 19: one word per act. Taking a slot offline is recorded as 'offline' (it was 'delete');
-- 'delete' now means a slot deleted for good, whose activations go with it, so none says 'delete'.
-- The audit log is not rewritten: it is append-only (db/0011_team.sql), and its older rows keep
-- the names they were written with ('delete_slot', 'take_offline'); GET /api/audit?action=offline
-- finds those too (store/audit.py).
ALTER TABLE activations DROP CONSTRAINT activations_action_check;
UPDATE activations SET action = 'offline' WHERE action = 'delete';
ALTER TABLE activations ADD CONSTRAINT activations_action_check
    CHECK (action IN ('deploy', 'rollback', 'offline', 'expire', 'promote'));

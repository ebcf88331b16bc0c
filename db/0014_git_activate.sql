-- Draft git deploys (issue 14): a repo-URL deploy with "activate": false publishes its release,
-- config version and permalink without going live. The queue coalesces by (slot, activate), so a
-- draft request never absorbs a live one, nor a live one a draft.
ALTER TABLE git_jobs ADD COLUMN activate boolean NOT NULL DEFAULT true;

-- A queued git deploy waiting behind a running one of its slot starts only once the pushes to
-- that slot have settled (see gitops.SETTLE_SECONDS), so a burst of deliveries becomes one deploy.
ALTER TABLE git_jobs ADD COLUMN not_before timestamptz NOT NULL DEFAULT now();

-- Digest uploads (the client sends path -> sha256, then only the files the store lacks),
-- pinned config versions, and versions whose files retention has removed.

ALTER TABLE deployments DROP CONSTRAINT deployments_source_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_source_check CHECK (source IN ('zip', 'git', 'upload'));

CREATE TABLE uploads (
    id            uuid PRIMARY KEY,
    slot          text        NOT NULL,
    ttl_seconds   integer,
    manifest      jsonb       NOT NULL,
    finalized_at  timestamptz,
    deployment_id bigint REFERENCES deployments (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE config_versions ADD COLUMN pinned boolean NOT NULL DEFAULT false;
ALTER TABLE config_versions DROP CONSTRAINT config_versions_status_check;
ALTER TABLE config_versions ADD CONSTRAINT config_versions_status_check
    CHECK (status IN ('pending', 'active', 'inactive', 'failed', 'pruned'));

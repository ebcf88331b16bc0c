-- GitOps: the slots deploy.yaml manages, queued git deploys, and webhook deliveries already handled.

-- Slots created from deploy.yaml (fixed sites) or by a push to a preview branch. A slot that
-- leaves deploy.yaml is taken offline and its row removed; its deployments and versions stay.
CREATE TABLE managed_slots (
    slot       text PRIMARY KEY,
    repo       text        NOT NULL,
    branch     text        NOT NULL,
    path       text        NOT NULL DEFAULT '',
    -- The slot template ("docs-{branch}") of a preview slot; NULL for a fixed site.
    template   text,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- What a queued or running git deployment must fetch. The deployments row holds its state;
-- queued rows survive a restart and are picked up again.
CREATE TABLE git_jobs (
    deployment_id bigint PRIMARY KEY REFERENCES deployments (id),
    slot          text NOT NULL,
    repo          text NOT NULL,
    branch        text NOT NULL,
    path          text NOT NULL DEFAULT '',
    template      text
);
CREATE INDEX git_jobs_slot ON git_jobs (slot);

-- Replay protection: a delivery id seen once is not acted on again.
CREATE TABLE webhook_deliveries (
    provider       text        NOT NULL,
    delivery_id    text        NOT NULL,
    deployment_ids bigint[]    NOT NULL DEFAULT '{}',
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, delivery_id)
);

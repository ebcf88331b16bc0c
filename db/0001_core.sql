-- The core: deployments, every generated nginx config, slots, activations, access logs.

CREATE TABLE deployments (
    id          bigserial PRIMARY KEY,
    slot        text        NOT NULL,
    -- The build's own outcome; whether it is live is derived from slots (see store.py).
    state       text        NOT NULL CHECK (state IN ('queued', 'building', 'ready', 'failed')),
    source      text        NOT NULL CHECK (source IN ('zip', 'git')),
    source_name text,
    trigger     text,
    repo        text,
    branch      text,
    commit_sha  text,
    pusher      text,
    files       integer,
    bytes       bigint,
    ttl_seconds integer,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX deployments_slot_id ON deployments (slot, id DESC);

-- One immutable row per generated slot config. Only `status` changes after insert.
CREATE TABLE config_versions (
    id            bigserial PRIMARY KEY,
    slot          text        NOT NULL,
    version       integer     NOT NULL CHECK (version > 0),
    deployment_id bigint      NOT NULL REFERENCES deployments (id),
    release_dir   text        NOT NULL,
    config        text        NOT NULL,
    sha256        text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('pending', 'active', 'inactive', 'failed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (slot, version)
);

-- The desired state of each slot: which version nginx must serve (NULL: offline).
CREATE TABLE slots (
    slot           text PRIMARY KEY,
    active_version integer,
    deployment_id  bigint REFERENCES deployments (id),
    status         text        NOT NULL CHECK (status IN ('live', 'offline', 'expired')),
    expires_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every switch of what a slot serves: deploy, rollback, delete, expiry.
CREATE TABLE activations (
    id         bigserial PRIMARY KEY,
    slot       text        NOT NULL,
    version    integer,
    action     text        NOT NULL CHECK (action IN ('deploy', 'rollback', 'delete', 'expire')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activations_slot_id ON activations (slot, id DESC);

-- Filled from nginx's structured access log (analytics).
CREATE TABLE access_logs (
    id          bigserial PRIMARY KEY,
    slot        text,
    at          timestamptz NOT NULL,
    method      text,
    path        text,
    status      integer,
    bytes       bigint,
    duration_ms double precision,
    remote      text,
    referer     text,
    user_agent  text
);
CREATE INDEX access_logs_slot_at ON access_logs (slot, at);

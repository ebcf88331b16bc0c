-- A team, not one shared token: users with a role, their API tokens, the audit log, deploy locks.
-- The bootstrap token (DROPHOST_API_TOKEN, the one `drophost up` makes) stays an admin credential
-- without a row: a data directory from before this migration keeps working unchanged.

CREATE TABLE users (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role          text        NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
    -- deploy rights of a deployer: slot names or prefixes ending in * ("docs-*")
    slots         text[]      NOT NULL DEFAULT '{}',
    -- scrypt$<n>$<r>$<p>$<salt hex>$<hash hex> (access.py)
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only the sha256 of each token is kept: it is shown once, when made.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    user_name    text        NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name         text        NOT NULL,
    token_sha256 text        NOT NULL UNIQUE,
    scopes       text[]      NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_name, id);

-- Every change of state: who (a user, token:<id>, webhook:<provider>, poll, deploy.yaml), from where,
-- to what, with which result.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    address text,
    action  text        NOT NULL,
    target  text,
    result  text        NOT NULL,
    detail  text
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_target ON audit_log (target, id DESC);

-- The service migrates its own database, so it owns this table, and an owner can always grant
-- itself back what a REVOKE takes away. A trigger is what refuses UPDATE and DELETE for it; a role
-- that does not own the table also loses the privileges below.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- A locked slot builds what is pushed but does not make it live.
CREATE TABLE slot_locks (
    slot      text PRIMARY KEY,
    reason    text        NOT NULL,
    locked_by text        NOT NULL,
    locked_at timestamptz NOT NULL DEFAULT now()
);

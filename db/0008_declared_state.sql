-- The last deploy.yaml that was valid and applied: an invalid file (at start, on reload, on SIGHUP)
-- leaves this one in force, and a restart over a broken file serves and reconciles with it.
-- One row at most (id is always true).
CREATE TABLE declared_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    file text NOT NULL,
    text text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

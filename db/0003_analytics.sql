-- Analytics: where the ingestion of nginx's access log stands, so that a restart continues where
-- it stopped and a rotated file is finished before the new one is read (no request counted twice).
-- One row per log path. `head` is the sha256 of the file's first line: it tells a new file that
-- reused an inode number from the one already read. The previous file is remembered too, because
-- nginx keeps writing to a renamed log until it has reopened its files (SIGUSR1).
CREATE TABLE access_log_cursors (
    log_path       text PRIMARY KEY,
    device         bigint,
    inode          bigint,
    head           text   NOT NULL DEFAULT '',
    position       bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    prev_device    bigint,
    prev_inode     bigint,
    prev_head      text   NOT NULL DEFAULT '',
    prev_position  bigint NOT NULL DEFAULT 0 CHECK (prev_position >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Retention deletes by time; the report filters by time first.
CREATE INDEX access_logs_at ON access_logs (at);

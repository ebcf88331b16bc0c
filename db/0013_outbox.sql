-- The outbox (issue 17): every outgoing call (a commit status, a notification) is a row written in
-- the same transaction as the state change that causes it, then delivered by the service's
-- delivery worker with retries. A crash between the change and the call loses nothing.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    -- Sent with every attempt (Idempotency-Key header, and in json bodies), so a receiver can drop
    -- a repeat: delivery is at least once (see gitops/delivery.py).
    idempotency_key text        NOT NULL UNIQUE,
    -- 'comment': a pull request's preview comment (issue 17, item 2) goes through the same outbox.
    kind            text        NOT NULL CHECK (kind IN ('status', 'notification', 'comment')),
    -- The forge (github, gitlab, gitea, bitbucket) or the notification format (json, slack, matrix, teams).
    target          text        NOT NULL,
    event           text        NOT NULL,
    slot            text        NOT NULL,
    deployment_id   bigint,
    url             text        NOT NULL,
    -- The exact bytes sent (UTF-8 JSON), so every attempt and its signature are the same.
    body            text        NOT NULL,
    -- The NAME of the variable holding the token or signing secret, read at delivery; never its value.
    secret_env      text,
    -- Rows of one stream (one destination, or one commit's statuses) are delivered in id order.
    stream          text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    response_status integer,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX outbox_stream_pending ON outbox (stream, id) WHERE state = 'pending';

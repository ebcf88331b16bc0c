"""SQL of the outbox: outgoing calls written with the state change that causes them, then delivered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from drophost.store.rows import Conn, Row, fetch_all, fetch_one


class Planned(Protocol):
    """A planned call (pipeline/feedback.py's Message)."""

    @property
    def key(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def event(self) -> str: ...

    @property
    def slot(self) -> str: ...

    @property
    def deployment_id(self) -> int | None: ...

    @property
    def url(self) -> str: ...

    @property
    def body(self) -> str: ...

    @property
    def secret_env(self) -> str | None: ...

    @property
    def stream(self) -> str: ...


def add(conn: Conn, messages: Iterable[Planned]) -> None:
    """Write planned calls in the caller's transaction; a key already written is not written again."""
    rows = [
        (m.key, m.kind, m.target, m.event, m.slot, m.deployment_id, m.url, m.body, m.secret_env, m.stream)
        for m in messages
    ]
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (idempotency_key, kind, target, event, slot, deployment_id, url, body,"
            " secret_env, stream) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            rows,
        )


def claim_due(conn: Conn) -> Row | None:
    """The oldest due row whose stream has no earlier row still pending, locked FOR UPDATE SKIP LOCKED
    for the caller's transaction (so a second worker takes another stream, and a crash unlocks it)."""
    return fetch_one(
        conn,
        "SELECT o.id, o.idempotency_key, o.kind, o.target, o.event, o.slot, o.url, o.body, o.secret_env,"
        " o.attempts FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= now()"
        " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.stream = o.stream AND p.state = 'pending'"
        " AND p.id < o.id) ORDER BY o.id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )


def mark_sent(conn: Conn, row_id: int, status: int) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'sent', attempts = attempts + 1, response_status = %s, last_error = NULL,"
        " sent_at = now() WHERE id = %s",
        (status, row_id),
    )


def retry_later(conn: Conn, row_id: int, error: str, status: int | None, delay: float) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = %s, response_status = %s,"
        " next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
        (error, status, delay, row_id),
    )


def mark_failed(conn: Conn, row_id: int, error: str, status: int | None) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = %s, response_status = %s"
        " WHERE id = %s",
        (error, status, row_id),
    )


def seconds_to_next(conn: Conn) -> float | None:
    """Seconds until a row may be claimed: only the first pending row of each stream counts (the rows
    behind one that backs off wait for it, so they must not make the workers poll at once)."""
    row = fetch_one(
        conn,
        "SELECT EXTRACT(EPOCH FROM min(o.next_attempt_at) - clock_timestamp())::float8 AS wait"
        " FROM outbox o WHERE o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p"
        " WHERE p.stream = o.stream AND p.state = 'pending' AND p.id < o.id)",
    )
    return None if row is None or row["wait"] is None else max(float(row["wait"]), 0.0)


def list_deliveries(conn: Conn, *, state: str | None = None, slot: str | None = None, limit: int = 100) -> list[Row]:
    """The newest rows first, without their bodies (GET /api/outbox)."""
    return fetch_all(
        conn,
        "SELECT id, idempotency_key, kind, target, event, slot, deployment_id, url, state, attempts, last_error,"
        " response_status, next_attempt_at, created_at, sent_at FROM outbox"
        " WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(slot)s::text IS NULL OR slot = %(slot)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"state": state, "slot": slot, "limit": limit},
    )


def expiring_slots(conn: Conn, within_seconds: float) -> list[Row]:
    """Live slots whose time to live ends within `within_seconds` (the `expiring` notification)."""
    return fetch_all(
        conn,
        "SELECT s.slot, s.expires_at, s.active_version, d.id, d.repo, d.branch, d.commit_sha"
        " FROM slots s LEFT JOIN deployments d ON d.id = s.deployment_id WHERE s.status = 'live'"
        " AND s.expires_at IS NOT NULL AND s.expires_at > now()"
        " AND s.expires_at <= now() + make_interval(secs => %s) ORDER BY s.slot",
        (within_seconds,),
    )

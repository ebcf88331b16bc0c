"""SQL of users and their API tokens (only each token's sha256 is stored)."""

from __future__ import annotations

from datetime import datetime

import psycopg

from drophost.errors import ConflictError
from drophost.store.rows import Conn, Row, fetch_all, fetch_one

_TOKEN_COLUMNS = "id, user_name, name, scopes, expires_at, created_at, last_used_at, revoked_at"


def add_user(conn: Conn, *, name: str, role: str, slots: list[str], password_hash: str) -> Row:
    try:
        row = fetch_one(
            conn,
            "INSERT INTO users (name, role, slots, password_hash) VALUES (%s, %s, %s, %s)"
            " RETURNING name, role, slots, created_at",
            (name, role, slots, password_hash),
        )
    except psycopg.errors.UniqueViolation:
        raise ConflictError(f'there is a user "{name}" already', field="name") from None
    assert row is not None
    return row


def get_user(conn: Conn, name: str) -> Row | None:
    return fetch_one(conn, "SELECT name, role, slots, password_hash, created_at FROM users WHERE name = %s", (name,))


def list_users(conn: Conn) -> list[Row]:
    return fetch_all(conn, "SELECT name, role, slots, created_at FROM users ORDER BY name")


def delete_user(conn: Conn, name: str) -> bool:
    """Remove a user and (by cascade) every token of theirs."""
    return conn.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount == 1


def add_token(conn: Conn, *, user: str, name: str, digest: str, scopes: list[str], expires_at: datetime | None) -> Row:
    row = fetch_one(
        conn,
        "INSERT INTO api_tokens (user_name, name, token_sha256, scopes, expires_at) VALUES (%s, %s, %s, %s, %s)"
        f" RETURNING {_TOKEN_COLUMNS}",
        (user, name, digest, scopes, expires_at),
    )
    assert row is not None
    return row


def token_by_digest(conn: Conn, digest: str) -> Row | None:
    """A usable token (not revoked, not expired) and its user's role and slots; marks it used."""
    row = fetch_one(
        conn,
        "SELECT t.id, t.user_name, t.scopes, u.role, u.slots FROM api_tokens t JOIN users u ON u.name = t.user_name"
        " WHERE t.token_sha256 = %s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())",
        (digest,),
    )
    if row is not None:
        # At most one write a minute per token: a busy CI token must not turn every read into a write.
        conn.execute(
            "UPDATE api_tokens SET last_used_at = now() WHERE id = %s"
            " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            (row["id"],),
        )
    return row


def list_tokens(conn: Conn, user: str | None) -> list[Row]:
    """Tokens of one user (None: everyone's), revoked ones included, newest first."""
    return fetch_all(
        conn,
        f"SELECT {_TOKEN_COLUMNS} FROM api_tokens"
        " WHERE %(user)s::text IS NULL OR user_name = %(user)s ORDER BY id DESC",
        {"user": user},
    )


def get_token(conn: Conn, token_id: int) -> Row | None:
    return fetch_one(conn, f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = %s", (token_id,))


def revoke_token(conn: Conn, token_id: int) -> None:
    conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,))

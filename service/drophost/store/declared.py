"""SQL of the last good declared state: the deploy.yaml text applied last, kept while a newer file is invalid."""

from __future__ import annotations

from drophost.store.rows import Conn, Row, fetch_one


def last_good(conn: Conn) -> Row | None:
    return fetch_one(conn, "SELECT file, text, sha256, applied_at FROM declared_state WHERE id")


def save_good(conn: Conn, *, file: str, text: str, sha256: str) -> None:
    """Record an applied deploy.yaml; applied_at changes only when its content does."""
    conn.execute(
        "INSERT INTO declared_state (id, file, text, sha256, applied_at)"
        " VALUES (true, %(file)s, %(text)s, %(sha256)s, now())"
        " ON CONFLICT (id) DO UPDATE SET file = EXCLUDED.file, text = EXCLUDED.text,"
        " sha256 = EXCLUDED.sha256, applied_at = now()"
        " WHERE declared_state.sha256 <> EXCLUDED.sha256 OR declared_state.file <> EXCLUDED.file",
        {"file": file, "text": text, "sha256": sha256},
    )

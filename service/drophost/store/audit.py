"""SQL of the audit log (append-only: a trigger refuses UPDATE and DELETE) and of deploy locks."""

from __future__ import annotations

from datetime import datetime

from drophost.store.rows import Conn, Row, fetch_all, fetch_one

# Names rows were written with before db/0016_words.sql; the log is append-only, so they stay.
LEGACY_ACTIONS = {"offline": ("delete_slot", "take_offline")}


def record(
    conn: Conn,
    *,
    actor: str,
    action: str,
    target: str | None,
    result: str,
    address: str | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, address, action, target, result, detail) VALUES (%s, %s, %s, %s, %s, %s)",
        (actor[:200], address, action, target, result[:500], detail[:1000] if detail else None),
    )


def queued_by(conn: Conn, slot: str, deployment_id: int) -> str | None:
    """Who queued a git deployment: the actor of its first "queued deployment N of ..." row."""
    row = fetch_one(
        conn,
        "SELECT actor FROM audit_log WHERE action = 'git_deploy' AND target = %s AND result LIKE %s"
        " ORDER BY id LIMIT 1",
        (slot, f"queued deployment {deployment_id} of %"),
    )
    return str(row["actor"]) if row is not None else None


def list_entries(
    conn: Conn,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT id, at, actor, address, action, target, result, detail FROM audit_log"
        " WHERE (%(actor)s::text IS NULL OR actor = %(actor)s OR actor LIKE %(actor)s || ' (token %%')"
        " AND (%(action)s::text IS NULL OR action = ANY(%(actions)s))"
        " AND (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {
            "actor": actor,
            "action": action,
            "actions": [action, *LEGACY_ACTIONS.get(action or "", ())],
            "target": target,
            "since": since,
            "limit": limit,
        },
    )


# -- deploy locks -----------------------------------------------------------------------------------
def lock_slot(conn: Conn, slot: str, reason: str, by: str) -> None:
    conn.execute(
        "INSERT INTO slot_locks (slot, reason, locked_by) VALUES (%s, %s, %s)"
        " ON CONFLICT (slot) DO UPDATE SET reason = EXCLUDED.reason, locked_by = EXCLUDED.locked_by, locked_at = now()",
        (slot, reason, by),
    )


def unlock_slot(conn: Conn, slot: str) -> bool:
    return conn.execute("DELETE FROM slot_locks WHERE slot = %s", (slot,)).rowcount == 1


def slot_lock(conn: Conn, slot: str) -> Row | None:
    return fetch_one(conn, "SELECT slot, reason, locked_by, locked_at FROM slot_locks WHERE slot = %s", (slot,))


def slot_locks(conn: Conn) -> dict[str, Row]:
    return {r["slot"]: r for r in fetch_all(conn, "SELECT slot, reason, locked_by, locked_at FROM slot_locks")}

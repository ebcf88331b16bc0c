"""SQL of slots and activations: which version each slot serves, and every switch made."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from drophost.store.rows import Conn, Row, fetch_all, fetch_one
from drophost.store.versions import set_config_status


def get_slot(conn: Conn, slot: str) -> Row | None:
    return fetch_one(
        conn,
        "SELECT slot, active_version, deployment_id, status, expires_at, updated_at FROM slots WHERE slot = %s",
        (slot,),
    )


def slot_exists(conn: Conn, slot: str) -> bool:
    """Anything recorded under this name: a slots row, a version (a slot whose versions all failed), a deployment."""
    row = fetch_one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM slots WHERE slot = %(slot)s)"
        " OR EXISTS (SELECT 1 FROM config_versions WHERE slot = %(slot)s)"
        " OR EXISTS (SELECT 1 FROM deployments WHERE slot = %(slot)s) AS found",
        {"slot": slot},
    )
    return bool(row and row["found"])


def list_slots(conn: Conn) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT slot, active_version, deployment_id, status, expires_at, updated_at FROM slots ORDER BY slot",
    )


def activate(
    conn: Conn, *, slot: str, version: int, deployment_id: int, action: str, expires_at: datetime | None
) -> int:
    """Record that nginx now serves `version` of `slot` (call inside a transaction); the activation's id."""
    conn.execute(
        "UPDATE config_versions SET status = 'inactive' WHERE slot = %s AND status = 'active' AND version <> %s",
        (slot, version),
    )
    set_config_status(conn, slot, version, "active")
    conn.execute(
        "INSERT INTO slots (slot, active_version, deployment_id, status, expires_at, updated_at)"
        " VALUES (%(slot)s, %(version)s, %(deployment_id)s, 'live', %(expires_at)s, now())"
        " ON CONFLICT (slot) DO UPDATE SET active_version = EXCLUDED.active_version,"
        " deployment_id = EXCLUDED.deployment_id, status = 'live', expires_at = EXCLUDED.expires_at,"
        " updated_at = now()",
        {"slot": slot, "version": version, "deployment_id": deployment_id, "expires_at": expires_at},
    )
    return record_activation(conn, slot, version, action)


def deactivate(conn: Conn, *, slot: str, status: str, action: str) -> int:
    """Record that nginx no longer serves `slot`; its history and last deployment stay."""
    conn.execute("UPDATE config_versions SET status = 'inactive' WHERE slot = %s AND status = 'active'", (slot,))
    conn.execute(
        "UPDATE slots SET active_version = NULL, status = %s, expires_at = NULL, updated_at = now() WHERE slot = %s",
        (status, slot),
    )
    return record_activation(conn, slot, None, action)


def record_activation(conn: Conn, slot: str, version: int | None, action: str) -> int:
    row = fetch_one(
        conn,
        "INSERT INTO activations (slot, version, action) VALUES (%s, %s, %s) RETURNING id",
        (slot, version, action),
    )
    assert row is not None
    return int(row["id"])


def previous_version(conn: Conn, slot: str, current: int | None) -> int | None:
    """The version that was live before the current one, from the activation history."""
    row = fetch_one(
        conn,
        "SELECT a.version FROM activations a JOIN config_versions cv"
        " ON cv.slot = a.slot AND cv.version = a.version AND cv.status IN ('active', 'inactive')"
        " WHERE a.slot = %(slot)s AND a.version IS NOT NULL"
        " AND (%(current)s::int IS NULL OR a.version <> %(current)s) ORDER BY a.id DESC LIMIT 1",
        {"slot": slot, "current": current},
    )
    return None if row is None else int(row["version"])


def due_expiries(conn: Conn) -> list[str]:
    rows = fetch_all(
        conn,
        "SELECT slot FROM slots WHERE status = 'live' AND expires_at IS NOT NULL AND expires_at <= now()",
    )
    return [r["slot"] for r in rows]


def expired_slots(conn: Conn) -> list[str]:
    return [r["slot"] for r in fetch_all(conn, "SELECT slot FROM slots WHERE status = 'expired' ORDER BY slot")]


def set_expiry(conn: Conn, slot: str, expires_at: datetime | None) -> None:
    conn.execute("UPDATE slots SET expires_at = %s, updated_at = now() WHERE slot = %s", (expires_at, slot))


def list_activations(conn: Conn, slot: str, limit: int = 100) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT slot, version, action, created_at FROM activations WHERE slot = %s ORDER BY id DESC LIMIT %s",
        (slot, limit),
    )


def unfinished_deployments(conn: Conn, slot: str) -> list[int]:
    rows = fetch_all(
        conn, "SELECT id FROM deployments WHERE slot = %s AND state IN ('queued', 'building') ORDER BY id", (slot,)
    )
    return [int(r["id"]) for r in rows]


def delete_history(conn: Conn, slot: str) -> list[int]:
    """Remove every row of a slot: its state, versions, switches, lock, queued jobs, uploads, deployments
    (call inside a transaction). Returns the deployments' ids. The audit log keeps what happened."""
    mine = "SELECT id FROM deployments WHERE slot = %(slot)s"
    params = {"slot": slot}
    conn.execute(f"DELETE FROM git_jobs WHERE slot = %(slot)s OR deployment_id IN ({mine})", params)
    conn.execute(f"DELETE FROM uploads WHERE slot = %(slot)s OR deployment_id IN ({mine})", params)
    for table in ("slots", "config_versions", "activations", "slot_locks"):
        conn.execute(sql.SQL("DELETE FROM {} WHERE slot = %(slot)s").format(sql.Identifier(table)), params)
    rows = fetch_all(conn, "DELETE FROM deployments WHERE slot = %(slot)s RETURNING id", params)
    return sorted(int(r["id"]) for r in rows)

"""Every SQL query DropHost runs, as plain functions taking a connection. Values are parameters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]
Conn = psycopg.Connection[Any]

_DEPLOYMENT_COLUMNS = """
    d.id, d.slot, d.source, d.source_name, d.trigger, d.repo, d.branch, d.commit_sha, d.pusher,
    d.files, d.bytes, d.ttl_seconds, d.error, d.created_at, d.finished_at, d.state,
    CASE WHEN d.state <> 'ready' THEN d.state
         WHEN s.deployment_id = d.id THEN s.status
         ELSE 'superseded' END AS status,
    cv.version AS config_version
"""
_DEPLOYMENT_FROM = """
    FROM deployments d
    LEFT JOIN slots s ON s.slot = d.slot
    LEFT JOIN config_versions cv ON cv.deployment_id = d.id
"""


def _rows(conn: Conn, query: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query.encode(), params)
        return cur.fetchall()


def _row(conn: Conn, query: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> Row | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


# -- deployments -----------------------------------------------------------------------------
def create_deployment(conn: Conn, *, slot: str, source: str, state: str = "building", **fields: Any) -> int:
    allowed = {"source_name", "trigger", "repo", "branch", "commit_sha", "pusher", "ttl_seconds"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown deployment fields: {sorted(unknown)}")
    values = {name: fields.get(name) for name in sorted(allowed)}
    row = _row(
        conn,
        "INSERT INTO deployments (slot, source, state, source_name, trigger, repo, branch, commit_sha,"
        " pusher, ttl_seconds) VALUES (%(slot)s, %(source)s, %(state)s, %(source_name)s, %(trigger)s,"
        " %(repo)s, %(branch)s, %(commit_sha)s, %(pusher)s, %(ttl_seconds)s) RETURNING id",
        {"slot": slot, "source": source, "state": state, **values},
    )
    assert row is not None
    return int(row["id"])


def finish_deployment(
    conn: Conn,
    deployment_id: int,
    *,
    state: str,
    files: int | None = None,
    size: int | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        "UPDATE deployments SET state = %s, files = COALESCE(%s, files), bytes = COALESCE(%s, bytes),"
        " error = %s, finished_at = now() WHERE id = %s",
        (state, files, size, error, deployment_id),
    )


def get_deployment(conn: Conn, deployment_id: int) -> Row | None:
    return _row(conn, f"SELECT {_DEPLOYMENT_COLUMNS} {_DEPLOYMENT_FROM} WHERE d.id = %s", (deployment_id,))


def list_deployments(conn: Conn, *, slot: str | None = None, limit: int = 100) -> list[Row]:
    return _rows(
        conn,
        f"SELECT {_DEPLOYMENT_COLUMNS} {_DEPLOYMENT_FROM}"
        " WHERE (%(slot)s::text IS NULL OR d.slot = %(slot)s) ORDER BY d.id DESC LIMIT %(limit)s",
        {"slot": slot, "limit": limit},
    )


def fail_unfinished(conn: Conn, reason: str) -> list[int]:
    """Deployments a crash left half-done become failed; their pending configs too."""
    rows = _rows(
        conn,
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now()"
        # Queued git deploys are kept: the queue (gitqueue.py) picks them up again after a restart.
        " WHERE state = 'building' OR (state = 'queued' AND source <> 'git') RETURNING id",
        (reason,),
    )
    conn.execute("UPDATE config_versions SET status = 'failed' WHERE status = 'pending'")
    return [int(r["id"]) for r in rows]


# -- config versions ---------------------------------------------------------------------------
def next_version(conn: Conn, slot: str) -> int:
    row = _row(conn, "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM config_versions WHERE slot = %s", (slot,))
    assert row is not None
    return int(row["v"])


def insert_config_version(
    conn: Conn, *, slot: str, version: int, deployment_id: int, release_dir: str, config: str, sha256: str
) -> None:
    conn.execute(
        "INSERT INTO config_versions (slot, version, deployment_id, release_dir, config, sha256, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, 'pending')",
        (slot, version, deployment_id, release_dir, config, sha256),
    )


def set_config_status(conn: Conn, slot: str, version: int, status: str) -> None:
    conn.execute("UPDATE config_versions SET status = %s WHERE slot = %s AND version = %s", (status, slot, version))


def list_versions(conn: Conn, slot: str) -> list[Row]:
    return _rows(
        conn,
        "SELECT version, sha256, status, deployment_id, created_at FROM config_versions"
        " WHERE slot = %s ORDER BY version DESC",
        (slot,),
    )


def get_version(conn: Conn, slot: str, version: int) -> Row | None:
    return _row(
        conn,
        "SELECT version, sha256, status, deployment_id, created_at, config, release_dir FROM config_versions"
        " WHERE slot = %s AND version = %s",
        (slot, version),
    )


def active_configs(conn: Conn) -> dict[str, dict[str, Any]]:
    """Every live slot's active config: {"config": text, "release_dir": path}."""
    rows = _rows(
        conn,
        "SELECT s.slot, cv.config, cv.release_dir FROM slots s JOIN config_versions cv"
        " ON cv.slot = s.slot AND cv.version = s.active_version WHERE s.status = 'live'",
    )
    return {r["slot"]: {"config": r["config"], "release_dir": r["release_dir"]} for r in rows}


def kept_release_dirs(conn: Conn) -> set[str]:
    """Release directories some stored config can still make live (so must stay on disk)."""
    rows = _rows(conn, "SELECT release_dir FROM config_versions WHERE status IN ('active', 'inactive')")
    return {r["release_dir"] for r in rows}


# -- slots and activations -------------------------------------------------------------------
def get_slot(conn: Conn, slot: str) -> Row | None:
    return _row(
        conn,
        "SELECT slot, active_version, deployment_id, status, expires_at, updated_at FROM slots WHERE slot = %s",
        (slot,),
    )


def list_slots(conn: Conn) -> list[Row]:
    return _rows(
        conn,
        "SELECT slot, active_version, deployment_id, status, expires_at, updated_at FROM slots ORDER BY slot",
    )


def activate(
    conn: Conn, *, slot: str, version: int, deployment_id: int, action: str, expires_at: datetime | None
) -> None:
    """Record that nginx now serves `version` of `slot` (call inside a transaction)."""
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
    record_activation(conn, slot, version, action)


def deactivate(conn: Conn, *, slot: str, status: str, action: str) -> None:
    """Record that nginx no longer serves `slot`; its history and last deployment stay."""
    conn.execute("UPDATE config_versions SET status = 'inactive' WHERE slot = %s AND status = 'active'", (slot,))
    conn.execute(
        "UPDATE slots SET active_version = NULL, status = %s, expires_at = NULL, updated_at = now() WHERE slot = %s",
        (status, slot),
    )
    record_activation(conn, slot, None, action)


def record_activation(conn: Conn, slot: str, version: int | None, action: str) -> None:
    conn.execute("INSERT INTO activations (slot, version, action) VALUES (%s, %s, %s)", (slot, version, action))


def previous_version(conn: Conn, slot: str, current: int | None) -> int | None:
    """The version that was live before the current one, from the activation history."""
    row = _row(
        conn,
        "SELECT a.version FROM activations a JOIN config_versions cv"
        " ON cv.slot = a.slot AND cv.version = a.version AND cv.status IN ('active', 'inactive')"
        " WHERE a.slot = %(slot)s AND a.version IS NOT NULL"
        " AND (%(current)s::int IS NULL OR a.version <> %(current)s) ORDER BY a.id DESC LIMIT 1",
        {"slot": slot, "current": current},
    )
    return None if row is None else int(row["version"])


def due_expiries(conn: Conn) -> list[str]:
    rows = _rows(
        conn,
        "SELECT slot FROM slots WHERE status = 'live' AND expires_at IS NOT NULL AND expires_at <= now()",
    )
    return [r["slot"] for r in rows]


# -- digest uploads and retention -------------------------------------------------------------
def create_upload(
    conn: Conn,
    *,
    upload_id: str,
    slot: str,
    ttl_seconds: int | None,
    manifest: dict[str, str],
    source_name: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO uploads (id, slot, ttl_seconds, manifest, source_name) VALUES (%s, %s, %s, %s, %s)",
        (upload_id, slot, ttl_seconds, Jsonb(manifest), source_name),
    )


def get_upload(conn: Conn, upload_id: str) -> Row | None:
    return _row(
        conn,
        "SELECT id, slot, ttl_seconds, manifest, source_name, finalized_at, deployment_id, created_at"
        " FROM uploads WHERE id = %s",
        (upload_id,),
    )


def claim_upload(conn: Conn, upload_id: str) -> bool:
    """Mark an upload as being deployed; False if another request claimed it first."""
    rows = _rows(
        conn,
        "UPDATE uploads SET finalized_at = now() WHERE id = %s AND finalized_at IS NULL RETURNING id",
        (upload_id,),
    )
    return bool(rows)


def set_upload_deployment(conn: Conn, upload_id: str, deployment_id: int) -> None:
    conn.execute("UPDATE uploads SET deployment_id = %s WHERE id = %s", (deployment_id, upload_id))


def delete_stale_uploads(conn: Conn, older_than_seconds: int) -> int:
    rows = _rows(
        conn,
        "DELETE FROM uploads WHERE finalized_at IS NULL AND created_at < now() - make_interval(secs => %s)"
        " RETURNING id",
        (older_than_seconds,),
    )
    return len(rows)


def retention_candidates(conn: Conn, slot: str | None = None) -> list[Row]:
    """Every version that still has files on disk, with what retention needs to decide."""
    return _rows(
        conn,
        "SELECT slot, version, status, pinned, release_dir FROM config_versions"
        " WHERE status IN ('active', 'inactive') AND (%(slot)s::text IS NULL OR slot = %(slot)s)"
        " ORDER BY slot, version DESC",
        {"slot": slot},
    )


def mark_pruned(conn: Conn, slot: str, versions: list[int]) -> None:
    conn.execute(
        "UPDATE config_versions SET status = 'pruned' WHERE slot = %s AND version = ANY(%s) AND status = 'inactive'",
        (slot, versions),
    )


def set_pinned(conn: Conn, slot: str, version: int, pinned: bool) -> bool:
    rows = _rows(
        conn,
        "UPDATE config_versions SET pinned = %s WHERE slot = %s AND version = %s RETURNING version",
        (pinned, slot, version),
    )
    return bool(rows)


def set_expiry(conn: Conn, slot: str, expires_at: datetime | None) -> None:
    conn.execute("UPDATE slots SET expires_at = %s, updated_at = now() WHERE slot = %s", (expires_at, slot))


def list_activations(conn: Conn, slot: str, limit: int = 100) -> list[Row]:
    return _rows(
        conn,
        "SELECT slot, version, action, created_at FROM activations WHERE slot = %s ORDER BY id DESC LIMIT %s",
        (slot, limit),
    )

"""SQL of config_versions: each slot's numbered nginx configs, their releases and status."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from drophost.store.rows import Conn, Row, fetch_all, fetch_one


def next_version(conn: Conn, slot: str) -> int:
    row = fetch_one(conn, "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM config_versions WHERE slot = %s", (slot,))
    assert row is not None
    return int(row["v"])


def slot_known(conn: Conn, slot: str) -> bool:
    """Whether the slot has had a version (its name was accepted before the rules of today)."""
    return fetch_one(conn, "SELECT 1 AS one FROM config_versions WHERE slot = %s LIMIT 1", (slot,)) is not None


def insert_config_version(
    conn: Conn,
    *,
    slot: str,
    version: int,
    deployment_id: int,
    release_dir: str,
    config: str,
    sha256: str,
    site: dict[str, Any] | None = None,
    status: str = "pending",
) -> None:
    conn.execute(
        "INSERT INTO config_versions (slot, version, deployment_id, release_dir, config, sha256, status, site)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (slot, version, deployment_id, release_dir, config, sha256, status, Jsonb(site) if site is not None else None),
    )


def set_config_status(conn: Conn, slot: str, version: int, status: str) -> None:
    conn.execute("UPDATE config_versions SET status = %s WHERE slot = %s AND version = %s", (status, slot, version))


def list_versions(conn: Conn, slot: str) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT version, sha256, status, deployment_id, created_at FROM config_versions"
        " WHERE slot = %s ORDER BY version DESC",
        (slot,),
    )


def version_of_deployment(conn: Conn, slot: str, deployment_id: int) -> Row | None:
    return fetch_one(
        conn,
        "SELECT version, sha256, status, deployment_id, created_at, config, release_dir, site FROM config_versions"
        " WHERE slot = %s AND deployment_id = %s ORDER BY version LIMIT 1",
        (slot, deployment_id),
    )


def get_version(conn: Conn, slot: str, version: int) -> Row | None:
    return fetch_one(
        conn,
        "SELECT version, sha256, status, deployment_id, created_at, config, release_dir, site FROM config_versions"
        " WHERE slot = %s AND version = %s",
        (slot, version),
    )


def active_configs(conn: Conn) -> dict[str, dict[str, Any]]:
    """Every live slot's active config: {"config": text, "release_dir": path}."""
    rows = fetch_all(
        conn,
        "SELECT s.slot, cv.config, cv.release_dir FROM slots s JOIN config_versions cv"
        " ON cv.slot = s.slot AND cv.version = s.active_version WHERE s.status = 'live'",
    )
    return {r["slot"]: {"config": r["config"], "release_dir": r["release_dir"]} for r in rows}


def kept_release_dirs(conn: Conn) -> set[str]:
    """Release directories some stored config can still make live (so must stay on disk)."""
    rows = fetch_all(conn, "SELECT release_dir FROM config_versions WHERE status IN ('active', 'inactive', 'draft')")
    return {r["release_dir"] for r in rows}


def retention_candidates(conn: Conn, slot: str | None = None) -> list[Row]:
    """Every version that still has files on disk, with what retention needs to decide."""
    return fetch_all(
        conn,
        "SELECT slot, version, status, pinned, release_dir FROM config_versions"
        " WHERE status IN ('active', 'inactive', 'draft') AND (%(slot)s::text IS NULL OR slot = %(slot)s)"
        " ORDER BY slot, version DESC",
        {"slot": slot},
    )


def mark_pruned(conn: Conn, slot: str, versions: list[int]) -> set[int]:
    """Mark those of `versions` still unpinned and not live as pruned; returns the ones marked (a pin
    that came after retention read the versions keeps its version)."""
    rows = fetch_all(
        conn,
        "UPDATE config_versions SET status = 'pruned' WHERE slot = %s AND version = ANY(%s)"
        " AND status IN ('inactive', 'draft') AND NOT pinned RETURNING version",
        (slot, versions),
    )
    return {int(row["version"]) for row in rows}


def logs_past_retention(conn: Conn, slot: str, logged: list[int]) -> list[int]:
    """Which of the slot's deployments in `logged` keep their build log no longer: those whose version
    retention pruned, and those with no files kept (failed, unchanged) older than the oldest kept version."""
    rows = fetch_all(
        conn,
        "SELECT d.id FROM deployments d WHERE d.slot = %(slot)s AND d.id = ANY(%(logged)s)"
        " AND d.state NOT IN ('queued', 'building')"
        " AND NOT EXISTS (SELECT 1 FROM config_versions v WHERE v.deployment_id = d.id"
        "  AND v.status IN ('pending', 'active', 'inactive', 'draft'))"
        " AND (EXISTS (SELECT 1 FROM config_versions v WHERE v.deployment_id = d.id AND v.status = 'pruned')"
        "  OR d.id < (SELECT min(v.deployment_id) FROM config_versions v WHERE v.slot = %(slot)s"
        "   AND v.status IN ('active', 'inactive', 'draft')))"
        " ORDER BY d.id",
        {"slot": slot, "logged": logged},
    )
    return [int(row["id"]) for row in rows]


def set_pinned(conn: Conn, slot: str, version: int, pinned: bool) -> str | None:
    """The version's status after (un)pinning it; None if there is no such version. A pruned version
    is not pinned: its files are gone (the status says so)."""
    rows = fetch_all(
        conn,
        "UPDATE config_versions SET pinned = %s WHERE slot = %s AND version = %s"
        " AND (NOT %s OR status <> 'pruned') RETURNING status",
        (pinned, slot, version, pinned),
    )
    if rows:
        return str(rows[0]["status"])
    row = get_version(conn, slot, version)
    return None if row is None else str(row["status"])

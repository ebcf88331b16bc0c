"""SQL of the deployments table: one row per deploy, from queued or building to ready or failed."""

from __future__ import annotations

from typing import Any

from drophost.store.rows import Conn, Row, fetch_all, fetch_one

# The stored values of deployments.source (the API shows them as they are).
SOURCE_ZIP = "zip"
SOURCE_GIT = "git"
# The digest protocol (POST /api/uploads, then blobs, then finalize). It was the first "upload"
# besides ZIPs, and the stored value and the API output stay "upload" although a ZIP is uploaded too.
SOURCE_DIGEST = "upload"

_DEPLOYMENT_COLUMNS = """
    d.id, d.slot, d.source, d.source_name, d.trigger, d.repo, d.branch, d.commit_sha, d.pusher,
    d.files, d.bytes, d.ttl_seconds, d.error, d.created_at, d.finished_at, d.state,
    CASE WHEN d.state <> 'ready' THEN d.state
         WHEN s.deployment_id = d.id THEN s.status
         WHEN cv.status = 'draft' THEN 'draft'
         ELSE 'superseded' END AS status,
    cv.version AS config_version
"""


_DEPLOYMENT_FROM = """
    FROM deployments d
    LEFT JOIN slots s ON s.slot = d.slot
    LEFT JOIN config_versions cv ON cv.deployment_id = d.id
"""


def create_deployment(conn: Conn, *, slot: str, source: str, state: str = "building", **fields: Any) -> int:
    allowed = {"source_name", "trigger", "repo", "branch", "commit_sha", "pusher", "ttl_seconds"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown deployment fields: {sorted(unknown)}")
    values = {name: fields.get(name) for name in sorted(allowed)}
    row = fetch_one(
        conn,
        "INSERT INTO deployments (slot, source, state, source_name, trigger, repo, branch, commit_sha,"
        " pusher, ttl_seconds) VALUES (%(slot)s, %(source)s, %(state)s, %(source_name)s, %(trigger)s,"
        " %(repo)s, %(branch)s, %(commit_sha)s, %(pusher)s, %(ttl_seconds)s) RETURNING id",
        {"slot": slot, "source": source, "state": state, **values},
    )
    assert row is not None
    return int(row["id"])


def mark_ready(conn: Conn, deployment_id: int, *, files: int, size: int, note: str | None = None) -> None:
    """`note` goes in `error`: the one message a deployment shows (a draft kept by a locked slot says why)."""
    conn.execute(
        "UPDATE deployments SET state = 'ready', files = %s, bytes = %s, error = %s, finished_at = now() WHERE id = %s",
        (files, size, note, deployment_id),
    )


def set_note(conn: Conn, deployment_id: int, note: str) -> None:
    """Why a ready deployment is not live (a draft a later push superseded, a locked slot)."""
    conn.execute("UPDATE deployments SET error = %s WHERE id = %s AND state = 'ready'", (note, deployment_id))


def mark_unchanged(conn: Conn, deployment_id: int) -> None:
    """A build whose output is what the slot serves already: no version was made."""
    conn.execute(
        "UPDATE deployments SET state = 'unchanged', error = NULL, finished_at = now() WHERE id = %s",
        (deployment_id,),
    )


def mark_failed(conn: Conn, deployment_id: int, error: str) -> None:
    """The one way a deployment of any source is marked failed."""
    conn.execute(
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now() WHERE id = %s",
        (error, deployment_id),
    )


def get_deployment(conn: Conn, deployment_id: int) -> Row | None:
    return fetch_one(conn, f"SELECT {_DEPLOYMENT_COLUMNS} {_DEPLOYMENT_FROM} WHERE d.id = %s", (deployment_id,))


def list_deployments(conn: Conn, *, slot: str | None = None, limit: int = 100) -> list[Row]:
    return fetch_all(
        conn,
        f"SELECT {_DEPLOYMENT_COLUMNS} {_DEPLOYMENT_FROM}"
        " WHERE (%(slot)s::text IS NULL OR d.slot = %(slot)s) ORDER BY d.id DESC LIMIT %(limit)s",
        {"slot": slot, "limit": limit},
    )


def count_deployments(conn: Conn, *, slot: str | None = None) -> int:
    row = fetch_one(
        conn,
        "SELECT count(*) AS n FROM deployments WHERE (%(slot)s::text IS NULL OR slot = %(slot)s)",
        {"slot": slot},
    )
    return int(row["n"]) if row else 0


def fail_unfinished(conn: Conn, reason: str) -> list[int]:
    """Deployments a crash left half-done become failed; their pending configs too."""
    rows = fetch_all(
        conn,
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now()"
        # Queued git deploys are kept: GitOps.requeue queues them again after a restart.
        " WHERE state = 'building' OR (state = 'queued' AND source <> %s) RETURNING id",
        (reason, SOURCE_GIT),
    )
    conn.execute("UPDATE config_versions SET status = 'failed' WHERE status = 'pending'")
    return [int(r["id"]) for r in rows]

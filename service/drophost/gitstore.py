"""SQL for GitOps: managed slots, the git deploy queue, webhook deliveries. Values are parameters."""

from __future__ import annotations

from dataclasses import dataclass

from drophost.repourls import strip_credentials
from drophost.store import Conn, Row, _row, _rows


@dataclass(frozen=True)
class GitJob:
    deployment_id: int
    slot: str
    repo: str
    branch: str
    path: str
    template: str | None
    trigger: str | None
    pusher: str | None
    ttl_seconds: int | None


# -- managed slots -----------------------------------------------------------------------------
def managed_slots(conn: Conn) -> list[Row]:
    return _rows(conn, "SELECT slot, repo, branch, path, template FROM managed_slots ORDER BY slot")


def upsert_managed(conn: Conn, *, slot: str, repo: str, branch: str, path: str, template: str | None) -> None:
    conn.execute(
        "INSERT INTO managed_slots (slot, repo, branch, path, template) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (slot) DO UPDATE SET repo = EXCLUDED.repo, branch = EXCLUDED.branch,"
        " path = EXCLUDED.path, template = EXCLUDED.template, applied_at = now()",
        (slot, repo, branch, path, template),
    )


def is_managed(conn: Conn, slot: str) -> bool:
    return _row(conn, "SELECT 1 AS x FROM managed_slots WHERE slot = %s", (slot,)) is not None


def forget_managed(conn: Conn, slot: str) -> None:
    conn.execute("DELETE FROM managed_slots WHERE slot = %s", (slot,))


def live_slots(conn: Conn) -> dict[str, Row]:
    """Live slots with what their deployment came from."""
    rows = _rows(
        conn,
        "SELECT s.slot, s.active_version, d.source, d.repo, d.branch, d.commit_sha FROM slots s"
        " JOIN deployments d ON d.id = s.deployment_id WHERE s.status = 'live'",
    )
    return {r["slot"]: r for r in rows}


def last_commit(conn: Conn, slot: str) -> str | None:
    """The commit of the newest git deployment of a slot (a failed commit is not retried by polling)."""
    row = _row(
        conn,
        "SELECT commit_sha FROM deployments WHERE slot = %s AND source = 'git' AND commit_sha IS NOT NULL"
        " ORDER BY id DESC LIMIT 1",
        (slot,),
    )
    return None if row is None else row["commit_sha"]


# -- the queue -----------------------------------------------------------------------------------
def enqueue(
    conn: Conn,
    *,
    slot: str,
    repo: str,
    branch: str,
    path: str,
    template: str | None,
    trigger: str,
    pusher: str | None,
    ttl_seconds: int | None,
) -> int:
    """Queue a deploy of the branch head; a deploy already waiting for this slot absorbs it (coalescing)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('drophost-slot:' || %s))", (slot,))
        waiting = _row(
            conn,
            "SELECT d.id FROM deployments d JOIN git_jobs j ON j.deployment_id = d.id"
            " WHERE d.slot = %s AND d.state = 'queued' ORDER BY d.id LIMIT 1",
            (slot,),
        )
        fields = {"repo": repo, "branch": branch, "path": path, "template": template}
        shown = strip_credentials(repo)  # deployments are shown to API clients; the job keeps the real URL
        if waiting is not None:
            deployment_id = int(waiting["id"])
            conn.execute(
                "UPDATE git_jobs SET repo = %(repo)s, branch = %(branch)s, path = %(path)s, template = %(template)s"
                " WHERE deployment_id = %(id)s",
                {**fields, "id": deployment_id},
            )
            conn.execute(
                "UPDATE deployments SET repo = %s, branch = %s, pusher = COALESCE(%s, pusher), ttl_seconds = %s"
                " WHERE id = %s",
                (shown, branch, pusher, ttl_seconds, deployment_id),
            )
            return deployment_id
        row = _row(
            conn,
            "INSERT INTO deployments (slot, source, state, trigger, repo, branch, pusher, ttl_seconds)"
            " VALUES (%s, 'git', 'queued', %s, %s, %s, %s, %s) RETURNING id",
            (slot, trigger, shown, branch, pusher, ttl_seconds),
        )
        assert row is not None
        deployment_id = int(row["id"])
        conn.execute(
            "INSERT INTO git_jobs (deployment_id, slot, repo, branch, path, template)"
            " VALUES (%(id)s, %(slot)s, %(repo)s, %(branch)s, %(path)s, %(template)s)",
            {**fields, "id": deployment_id, "slot": slot},
        )
        return deployment_id


def claim_next(conn: Conn) -> GitJob | None:
    """Mark the oldest queued deploy of a slot with nothing building as building, and return it."""
    with conn.transaction():
        row = _row(
            conn,
            "UPDATE deployments SET state = 'building' WHERE id = ("
            " SELECT d.id FROM deployments d JOIN git_jobs j ON j.deployment_id = d.id"
            " WHERE d.state = 'queued' AND NOT EXISTS"
            " (SELECT 1 FROM deployments b WHERE b.slot = d.slot AND b.state = 'building')"
            " ORDER BY d.id LIMIT 1 FOR UPDATE OF d SKIP LOCKED)"
            " RETURNING id, trigger, pusher, ttl_seconds",
        )
        if row is None:
            return None
        job = _row(conn, "SELECT * FROM git_jobs WHERE deployment_id = %s", (row["id"],))
    assert job is not None
    return GitJob(
        deployment_id=int(row["id"]),
        slot=job["slot"],
        repo=job["repo"],
        branch=job["branch"],
        path=job["path"],
        template=job["template"],
        trigger=row["trigger"],
        pusher=row["pusher"],
        ttl_seconds=row["ttl_seconds"],
    )


def set_commit(conn: Conn, deployment_id: int, commit_sha: str) -> None:
    conn.execute("UPDATE deployments SET commit_sha = %s WHERE id = %s", (commit_sha, deployment_id))


def fail_job(conn: Conn, deployment_id: int, error: str) -> None:
    conn.execute(
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now() WHERE id = %s",
        (error, deployment_id),
    )


def cancel_queued(conn: Conn, slot: str, reason: str) -> None:
    conn.execute(
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now()"
        " WHERE slot = %s AND state = 'queued' AND source = 'git'",
        (reason, slot),
    )


def jobs_of(conn: Conn, deployment_ids: list[int]) -> list[Row]:
    """The jobs of the given deployments (used to queue again what a restart interrupted)."""
    return _rows(
        conn,
        "SELECT j.*, d.trigger, d.pusher, d.ttl_seconds FROM git_jobs j JOIN deployments d ON d.id = j.deployment_id"
        " WHERE j.deployment_id = ANY(%s)",
        (deployment_ids,),
    )


def has_pending(conn: Conn, slot: str) -> bool:
    """A git deploy of this slot is queued or building (polling leaves the slot alone)."""
    row = _row(
        conn,
        "SELECT 1 AS x FROM deployments WHERE slot = %s AND state IN ('queued', 'building') AND source = 'git' LIMIT 1",
        (slot,),
    )
    return row is not None


def deployment_states(conn: Conn, deployment_ids: list[int]) -> list[Row]:
    return _rows(
        conn,
        "SELECT d.id, d.slot, d.state, d.error, cv.version FROM deployments d"
        " LEFT JOIN config_versions cv ON cv.deployment_id = d.id AND cv.status IN ('active', 'inactive')"
        " WHERE d.id = ANY(%s) ORDER BY d.id",
        (deployment_ids,),
    )


# -- webhook deliveries ------------------------------------------------------------------------
def record_delivery(conn: Conn, provider: str, delivery_id: str) -> bool:
    """True if this delivery is new (and is now recorded), False for a replay."""
    row = _row(
        conn,
        "INSERT INTO webhook_deliveries (provider, delivery_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING RETURNING delivery_id",
        (provider, delivery_id),
    )
    return row is not None


def set_delivery_deployments(conn: Conn, provider: str, delivery_id: str, ids: list[int]) -> None:
    conn.execute(
        "UPDATE webhook_deliveries SET deployment_ids = %s WHERE provider = %s AND delivery_id = %s",
        (ids, provider, delivery_id),
    )


def forget_delivery(conn: Conn, provider: str, delivery_id: str) -> None:
    conn.execute("DELETE FROM webhook_deliveries WHERE provider = %s AND delivery_id = %s", (provider, delivery_id))

"""SQL for GitOps: managed slots, the git deploy queue, webhook deliveries. Values are parameters."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from psycopg import pq
from psycopg.types.json import Jsonb

from drophost.store import deployments
from drophost.store.rows import Conn, Row, fetch_all, fetch_one


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
    # The ref fetched when it is not refs/heads/<branch>: a tag or a pull request's head (db/0015).
    ref: str | None = None
    activate: bool = True  # False: publish a draft, the live site unchanged
    # A hosted push deployed before its ref moves: the pushed object and git's quarantine folder
    # holding it (None: deploy the ref's head, fetched or read when the job runs).
    commit: str | None = None
    objects: str | None = None


# -- managed slots -----------------------------------------------------------------------------
def managed_slots(conn: Conn) -> list[Row]:
    return fetch_all(conn, "SELECT slot, repo, branch, path, template FROM managed_slots ORDER BY slot")


def upsert_managed(conn: Conn, *, slot: str, repo: str, branch: str, path: str, template: str | None) -> None:
    conn.execute(
        "INSERT INTO managed_slots (slot, repo, branch, path, template) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (slot) DO UPDATE SET repo = EXCLUDED.repo, branch = EXCLUDED.branch,"
        " path = EXCLUDED.path, template = EXCLUDED.template, applied_at = now()",
        (slot, repo, branch, path, template),
    )


def is_managed(conn: Conn, slot: str) -> bool:
    return fetch_one(conn, "SELECT 1 AS x FROM managed_slots WHERE slot = %s", (slot,)) is not None


def forget_managed(conn: Conn, slot: str) -> None:
    conn.execute("DELETE FROM managed_slots WHERE slot = %s", (slot,))


def live_slots(conn: Conn) -> dict[str, Row]:
    """Live slots with what their deployment came from."""
    rows = fetch_all(
        conn,
        "SELECT s.slot, s.active_version, s.deployment_id, d.source, d.repo, d.branch, d.commit_sha FROM slots s"
        " JOIN deployments d ON d.id = s.deployment_id WHERE s.status = 'live'",
    )
    return {r["slot"]: r for r in rows}


def last_commit(conn: Conn, slot: str) -> str | None:
    """The commit of the newest git deployment of a slot (a failed commit is not retried by polling)."""
    row = fetch_one(
        conn,
        "SELECT commit_sha FROM deployments WHERE slot = %s AND source = 'git' AND commit_sha IS NOT NULL"
        " ORDER BY id DESC LIMIT 1",
        (slot,),
    )
    return None if row is None else row["commit_sha"]


def had_commit(conn: Conn, slot: str, commit_sha: str) -> bool:
    """Whether any git deployment of the slot (in any state) was of this commit."""
    row = fetch_one(
        conn,
        "SELECT 1 AS found FROM deployments WHERE slot = %s AND source = 'git' AND commit_sha = %s LIMIT 1",
        (slot, commit_sha),
    )
    return row is not None


def tag_refs(conn: Conn, slot: str) -> list[str]:
    """Every tag ref a git job of this slot was given (queued, deployed or failed): what the slot's
    newest tag is measured against."""
    # Not a hosted push's refused tag: that push was undone, the tag never existed. A hosted push's
    # held draft counts once it went live (git moved the tag), or its output was what was live.
    rows = fetch_all(
        conn,
        "SELECT DISTINCT j.ref FROM git_jobs j JOIN deployments d ON d.id = j.deployment_id"
        " WHERE j.slot = %s AND j.ref LIKE 'refs/tags/%%' AND NOT (j.commit_sha IS NOT NULL AND d.state = 'failed')"
        " AND (j.activate OR j.objects IS NULL OR d.state = 'unchanged' OR EXISTS ("
        "SELECT 1 FROM config_versions cv JOIN activations a ON a.slot = cv.slot AND a.version = cv.version"
        " WHERE cv.slot = j.slot AND cv.deployment_id = d.id))",
        (slot,),
    )
    return [r["ref"] for r in rows]


def newest_git_deployment(conn: Conn, slot: str) -> Row | None:
    """The newest git deployment of a slot: its state, commit and error."""
    return fetch_one(
        conn,
        "SELECT id, state, commit_sha, error FROM deployments WHERE slot = %s AND source = 'git'"
        " ORDER BY id DESC LIMIT 1",
        (slot,),
    )


# -- the queue -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Queued:
    deployment_id: int
    new: bool  # False: absorbed by the deploy already waiting for the slot


def queue_deploy(
    conn: Conn,
    *,
    slot: str,
    repo: str,
    shown_repo: str,
    branch: str,
    path: str,
    template: str | None,
    trigger: str,
    pusher: str | None,
    ttl_seconds: int | None,
    settle: float = 0.0,
    max_settle: float = 0.0,
    ref: str | None = None,
    activate: bool = True,
) -> Queued:
    """Queue a deploy of the branch head; a deploy already waiting for this slot absorbs it (coalescing).

    Only one of the same kind absorbs it: a draft request (`activate` False) and a live one are
    two different outcomes, so each waits as its own deploy and both happen, in the order queued.

    While a deploy of the slot is running, the waiting one is held until no push has come for
    `settle` seconds (never more than `max_settle` after it was queued): a burst of pushes then
    ends in one more deploy, not one per push that finds the waiting deploy already started.
    """
    with _transaction(conn):
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('drophost-slot:' || %s))", (slot,))
        # FOR UPDATE: a worker claiming this row meanwhile either waits for our commit (and then
        # fetches after this push) or has claimed it first, and then the row no longer matches.
        waiting = fetch_one(
            conn,
            "SELECT d.id, d.created_at, j.not_before > now() AS settling,"
            " EXISTS (SELECT 1 FROM deployments b WHERE b.slot = d.slot AND b.state = 'building') AS running"
            " FROM deployments d JOIN git_jobs j ON j.deployment_id = d.id"
            " WHERE d.slot = %s AND d.state = 'queued' AND j.activate = %s AND j.commit_sha IS NULL"
            " ORDER BY d.id LIMIT 1 FOR UPDATE OF d",
            (slot, activate),
        )
        values = {
            "slot": slot,
            "repo": repo,
            "shown": shown_repo,  # deployments are shown to API clients; the job keeps the real URL
            "branch": branch,
            "path": path,
            "template": template,
            "trigger": trigger,
            "pusher": pusher,
            "ttl": ttl_seconds,
            "settle": settle,
            "max": max_settle,
            "ref": ref,
            "activate": activate,
        }
        if waiting is not None:
            hold = waiting["running"] or waiting["settling"]
            conn.execute(
                "WITH job AS (UPDATE git_jobs SET repo = %(repo)s, branch = %(branch)s, path = %(path)s,"
                " template = %(template)s, ref = %(ref)s, not_before = CASE WHEN %(hold)s"
                " THEN LEAST(%(created)s + make_interval(secs => %(max)s), now() + make_interval(secs => %(settle)s))"
                " ELSE not_before END WHERE deployment_id = %(id)s RETURNING deployment_id)"
                " UPDATE deployments SET repo = %(shown)s, branch = %(branch)s, pusher = COALESCE(%(pusher)s, pusher),"
                " ttl_seconds = %(ttl)s WHERE id = (SELECT deployment_id FROM job)",
                {**values, "id": waiting["id"], "hold": hold, "created": waiting["created_at"]},
            )
            return Queued(int(waiting["id"]), new=False)
        row = fetch_one(
            conn,
            "WITH d AS (INSERT INTO deployments (slot, source, state, trigger, repo, branch, pusher, ttl_seconds)"
            " VALUES (%(slot)s, 'git', 'queued', %(trigger)s, %(shown)s, %(branch)s, %(pusher)s, %(ttl)s)"
            " RETURNING id, EXISTS (SELECT 1 FROM deployments b WHERE b.slot = %(slot)s AND b.state = 'building')"
            " AS running)"
            " INSERT INTO git_jobs (deployment_id, slot, repo, branch, path, template, ref, activate, not_before)"
            " SELECT d.id, %(slot)s, %(repo)s, %(branch)s, %(path)s, %(template)s, %(ref)s, %(activate)s,"
            " now() + CASE WHEN d.running THEN make_interval(secs => %(settle)s) ELSE interval '0' END FROM d"
            " RETURNING deployment_id",
            values,
        )
        assert row is not None
        return Queued(int(row["deployment_id"]), new=True)


def queue_pinned(
    conn: Conn,
    *,
    slot: str,
    repo: str,
    branch: str,
    path: str,
    template: str | None,
    pusher: str | None,
    ttl_seconds: int | None,
    commit: str,
    objects: str,
    ref: str | None = None,
    activate: bool = True,
) -> int:
    """Queue a deploy of one pushed commit (a hosted push waiting in pre-receive for its outcome).

    Never coalesced: the push that waits must learn the outcome of its own commit. It still waits
    behind a running deploy of its slot, like every job.
    """
    row = fetch_one(
        conn,
        "WITH d AS (INSERT INTO deployments (slot, source, state, trigger, repo, branch, pusher, ttl_seconds)"
        " VALUES (%(slot)s, 'git', 'queued', 'push', %(repo)s, %(branch)s, %(pusher)s, %(ttl)s) RETURNING id)"
        " INSERT INTO git_jobs (deployment_id, slot, repo, branch, path, template, ref, commit_sha, objects, activate)"
        " SELECT d.id, %(slot)s, %(repo)s, %(branch)s, %(path)s, %(template)s, %(ref)s, %(commit)s, %(objects)s,"
        " %(activate)s"
        " FROM d"
        " RETURNING deployment_id",
        {
            "slot": slot,
            "repo": repo,
            "branch": branch,
            "path": path,
            "template": template,
            "pusher": pusher,
            "ttl": ttl_seconds,
            "commit": commit,
            "objects": objects,
            "ref": ref,
            "activate": activate,
        },
    )
    assert row is not None
    return int(row["deployment_id"])


def cancel_if_queued(conn: Conn, deployment_id: int, reason: str) -> bool:
    """Fail a deploy no worker has claimed yet; False if one has (it then runs to its end)."""
    row = fetch_one(
        conn,
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now()"
        " WHERE id = %s AND state = 'queued' RETURNING id",
        (reason, deployment_id),
    )
    return row is not None


def live_git_source(conn: Conn, slot: str) -> Row | None:
    """What a live slot's deployment was made from, if it came from git: commit, repo and path."""
    return fetch_one(
        conn,
        "SELECT d.id, d.commit_sha, j.repo, j.path FROM slots s JOIN deployments d ON d.id = s.deployment_id"
        " JOIN git_jobs j ON j.deployment_id = d.id"
        " WHERE s.slot = %s AND s.status = 'live' AND d.source = 'git' AND d.commit_sha IS NOT NULL",
        (slot,),
    )


def pushed_deployment(conn: Conn, slot: str, repo: str, ref: str, pushed: str) -> Row | None:
    """The newest deploy of a slot a hosted push's pre-receive hook made of the object `pushed` for
    `ref` (a branch, or a tag's full ref) that is ready to land: a held draft (or one made live
    already), or unchanged. Not one still building: a second push of the same commit may be."""
    return fetch_one(
        conn,
        "SELECT d.id, d.state, d.commit_sha, d.error FROM git_jobs j JOIN deployments d ON d.id = j.deployment_id"
        " WHERE j.slot = %(slot)s AND j.repo = %(repo)s AND j.branch = %(ref)s AND j.commit_sha = %(pushed)s"
        " AND j.objects IS NOT NULL AND (d.state = 'unchanged' OR (d.state = 'ready' AND EXISTS ("
        "SELECT 1 FROM config_versions cv WHERE cv.slot = d.slot AND cv.deployment_id = d.id"
        " AND cv.status IN ('draft', 'active'))))"
        " ORDER BY d.id DESC LIMIT 1",
        {"slot": slot, "repo": repo, "ref": ref, "pushed": pushed},
    )


def activated_since(conn: Conn, slot: str, deployment_id: int) -> bool:
    """Whether the slot switched to another version (or went offline) after the deployment was queued."""
    row = fetch_one(
        conn,
        "SELECT 1 AS found FROM activations a JOIN deployments d ON d.id = %s"
        " WHERE a.slot = %s AND a.created_at >= d.created_at LIMIT 1",
        (deployment_id, slot),
    )
    return row is not None


def _transaction(conn: Conn) -> AbstractContextManager[object]:
    # Inside the caller's transaction (the group commit of webhook deliveries) no savepoint is
    # needed: an error there fails the whole transaction, and no delivery of it is acknowledged.
    if conn.info.transaction_status == pq.TransactionStatus.INTRANS:
        return nullcontext()
    return conn.transaction()


# A job of neither a skipped preview template nor a skipped fixed slot (parameters slots, templates).
_NOT_SKIPPED = (
    " AND NOT (COALESCE(j.template = ANY(%(templates)s::text[]), false)"
    " OR (j.template IS NULL AND j.slot = ANY(%(slots)s::text[])))"
)


@dataclass(frozen=True)
class Builds:
    """Which jobs build (deploy.yaml's build: sites): fixed slots, and the templates of previews."""

    slots: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()


def claim_next(conn: Conn, skip: Builds | None = None) -> GitJob | None:
    """Mark the oldest queued deploy of a slot with nothing building as building, and return it.

    With `skip` (every build slot is taken), builds are left queued, where later pushes to their
    slot still coalesce into them, and the next other deploy is claimed. One statement (one round
    trip): the UPDATE claims the row, the join reads its job.
    """
    skip = skip or Builds()
    row = fetch_one(
        conn,
        "WITH claimed AS (UPDATE deployments SET state = 'building' WHERE id = ("
        " SELECT d.id FROM deployments d JOIN git_jobs j ON j.deployment_id = d.id"
        " WHERE d.state = 'queued' AND j.not_before <= now() AND NOT EXISTS"
        " (SELECT 1 FROM deployments b WHERE b.slot = d.slot AND b.state = 'building')"
        + _NOT_SKIPPED
        + " ORDER BY d.id LIMIT 1 FOR UPDATE OF d SKIP LOCKED)"
        " RETURNING id, trigger, pusher, ttl_seconds)"
        " SELECT c.id, c.trigger, c.pusher, c.ttl_seconds, j.slot, j.repo, j.branch, j.path, j.template, j.ref,"
        " j.activate, j.commit_sha, j.objects FROM claimed c JOIN git_jobs j ON j.deployment_id = c.id",
        {"slots": list(skip.slots), "templates": list(skip.templates)},
    )
    if row is None:
        return None
    return GitJob(
        deployment_id=int(row["id"]),
        slot=row["slot"],
        repo=row["repo"],
        branch=row["branch"],
        path=row["path"],
        template=row["template"],
        trigger=row["trigger"],
        pusher=row["pusher"],
        ttl_seconds=row["ttl_seconds"],
        ref=row["ref"],
        activate=bool(row["activate"]),
        commit=row["commit_sha"],
        objects=row["objects"],
    )


def seconds_to_next_job(conn: Conn, skip: Builds | None = None) -> float | None:
    """Seconds until a settling deploy may start, None if none waits (one behind a running deploy
    of its slot is claimed by the worker that finishes that deploy; `skip`: builds waiting for a
    build slot, claimed once one is released)."""
    skip = skip or Builds()
    row = fetch_one(
        conn,
        "SELECT EXTRACT(EPOCH FROM min(j.not_before) - clock_timestamp())::float8 AS wait"
        " FROM deployments d JOIN git_jobs j ON j.deployment_id = d.id WHERE d.state = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM deployments b WHERE b.slot = d.slot AND b.state = 'building')" + _NOT_SKIPPED,
        {"slots": list(skip.slots), "templates": list(skip.templates)},
    )
    return None if row is None or row["wait"] is None else max(float(row["wait"]), 0.0)


def set_commit(conn: Conn, deployment_id: int, commit_sha: str) -> None:
    conn.execute("UPDATE deployments SET commit_sha = %s WHERE id = %s", (commit_sha, deployment_id))


def fail_job(conn: Conn, deployment_id: int, error: str) -> None:
    deployments.mark_failed(conn, deployment_id, error)


def cancel_queued(conn: Conn, slot: str, reason: str) -> None:
    conn.execute(
        "UPDATE deployments SET state = 'failed', error = %s, finished_at = now()"
        " WHERE slot = %s AND state = 'queued' AND source = 'git'",
        (reason, slot),
    )


def jobs_of(conn: Conn, deployment_ids: list[int]) -> list[Row]:
    """The jobs of the given deployments (used to queue again what a restart interrupted)."""
    return fetch_all(
        conn,
        "SELECT j.*, d.trigger, d.pusher, d.ttl_seconds FROM git_jobs j JOIN deployments d ON d.id = j.deployment_id"
        " WHERE j.deployment_id = ANY(%s)",
        (deployment_ids,),
    )


def has_pending(conn: Conn, slot: str) -> bool:
    """A git deploy of this slot is queued or building (polling leaves the slot alone)."""
    row = fetch_one(
        conn,
        "SELECT 1 AS x FROM deployments WHERE slot = %s AND state IN ('queued', 'building') AND source = 'git' LIMIT 1",
        (slot,),
    )
    return row is not None


def deployment_states(conn: Conn, deployment_ids: list[int]) -> list[Row]:
    return fetch_all(
        conn,
        "SELECT d.id, d.slot, d.state, d.error, cv.version FROM deployments d"
        " LEFT JOIN config_versions cv ON cv.deployment_id = d.id AND cv.status IN ('active', 'inactive', 'draft')"
        " WHERE d.id = ANY(%s) ORDER BY d.id",
        (deployment_ids,),
    )


# -- webhook deliveries ------------------------------------------------------------------------
def record_deliveries(conn: Conn, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record many (provider, delivery id) at once; return those that are new (the others are replays)."""
    if not keys:
        return set()
    rows = fetch_all(
        conn,
        "INSERT INTO webhook_deliveries (provider, delivery_id)"
        " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING provider, delivery_id",
        ([k[0] for k in keys], [k[1] for k in keys]),
    )
    return {(r["provider"], r["delivery_id"]) for r in rows}


def set_deliveries_deployments(conn: Conn, deliveries: list[tuple[str, str, list[int]]]) -> None:
    """Remember the deployments each (provider, delivery id, ids) queued."""
    if deliveries:
        conn.execute(
            "UPDATE webhook_deliveries w SET deployment_ids = ARRAY(SELECT e::bigint"
            " FROM jsonb_array_elements_text(v.ids) WITH ORDINALITY AS i(e, n) ORDER BY n)"
            " FROM jsonb_to_recordset(%s) AS v(provider text, delivery_id text, ids jsonb)"
            " WHERE w.provider = v.provider AND w.delivery_id = v.delivery_id",
            (Jsonb([{"provider": p, "delivery_id": d, "ids": ids} for p, d, ids in deliveries]),),
        )

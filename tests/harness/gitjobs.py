"""Git jobs put straight into PostgreSQL's queue, as GitOps would."""

from __future__ import annotations

from drophost.store import gitjobs
from drophost.store.rows import Conn


def queue_webhook_deploy(
    conn: Conn, *, slot: str, repo: str, pusher: str | None, settle: float = 0.0, max_settle: float = 0.0
) -> gitjobs.Queued:
    """A push webhook's deploy of branch main, queued straight in PostgreSQL (as GitOps would)."""
    return gitjobs.queue_deploy(
        conn,
        slot=slot,
        repo=repo,
        shown_repo=repo,
        branch="main",
        path="",
        template=None,
        trigger="webhook",
        pusher=pusher,
        ttl_seconds=None,
        settle=settle,
        max_settle=max_settle,
    )

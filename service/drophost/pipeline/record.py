"""Record: what a step did, written to PostgreSQL. The one place a deployment is marked ready or
failed and a config version made active, inactive or failed.

Each of these transactions also writes the outbox rows the change causes (commit statuses,
notifications: feedback.py plans them from the deploy.yaml in force), so they are committed together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from drophost.errors import NotFoundError
from drophost.pipeline import feedback, releases
from drophost.pipeline.context import Context
from drophost.pipeline.feedback import FAILURE, PENDING, SUCCESS
from drophost.pipeline.nginxconfig import expired_config
from drophost.store import deployments, gitjobs, outbox, slots, versions
from drophost.store.rows import Conn

log = logging.getLogger(__name__)


def deployed(
    ctx: Context,
    *,
    slot: str,
    version: int,
    deployment_id: int,
    expires_at: datetime | None,
    files: int,
    size: int,
) -> None:
    """nginx serves a new deployment: its version is active, the deployment ready."""
    with _recording(ctx, slot) as conn:
        slots.activate(
            conn, slot=slot, version=version, deployment_id=deployment_id, action="deploy", expires_at=expires_at
        )
        deployments.mark_ready(conn, deployment_id, files=files, size=size)
        _plan_deployment(ctx, conn, deployment_id, SUCCESS)


def rolled_back(ctx: Context, *, slot: str, version: int, deployment_id: int, action: str = "rollback") -> None:
    """nginx serves a stored version again (a rollback, or the promote of a draft)."""
    with _recording(ctx, slot) as conn:
        activation = slots.activate(
            conn, slot=slot, version=version, deployment_id=deployment_id, action=action, expires_at=None
        )
        row = None if ctx.feedback.empty else deployments.get_deployment(conn, deployment_id)
        _add(
            conn,
            lambda: feedback.slot_messages(
                ctx.feedback, ctx.settings, event=action, slot=slot, subject=str(activation), row=row, version=version
            ),
        )


def drafted(
    ctx: Context,
    *,
    deployment_id: int,
    files: int,
    size: int,
    note: str | None = None,
    announce: bool = True,
    **version: Any,
) -> None:
    """A deployment published without going live: its version waits as a draft, nginx unchanged.
    `note`: why it was not made live when it was asked to be (a locked slot), kept on the deployment.
    `announce`: False for a draft held to go live (its success is planned then, by `deployed`)."""
    with ctx.pool.connection() as conn, conn.transaction():
        versions.insert_config_version(conn, deployment_id=deployment_id, status="draft", **version)
        deployments.mark_ready(conn, deployment_id, files=files, size=size, note=note)
        if announce:
            _plan_deployment(ctx, conn, deployment_id, SUCCESS, draft=True)


def draft_kept(ctx: Context, deployment_id: int, note: str) -> None:
    """A held draft that did not go live stays a draft; `note` says why."""
    with ctx.pool.connection() as conn, conn.transaction():
        deployments.set_note(conn, deployment_id, note)


def rules_changed(ctx: Context, *, slot: str, version: int, deployment_id: int, expires_at: datetime | None) -> None:
    """nginx serves a new config version of the same release (PATCH of the slot's rules)."""
    with _recording(ctx, slot) as conn:
        slots.activate(
            conn, slot=slot, version=version, deployment_id=deployment_id, action="deploy", expires_at=expires_at
        )


def taken_offline(ctx: Context, *, slot: str, status: str, action: str) -> None:
    with _recording(ctx, slot) as conn:
        before = None if ctx.feedback.empty else slots.get_slot(conn, slot)
        activation = slots.deactivate(conn, slot=slot, status=status, action=action)
        last = before["deployment_id"] if before is not None else None
        row = deployments.get_deployment(conn, last) if last is not None else None
        _add(
            conn,
            lambda: feedback.slot_messages(
                ctx.feedback, ctx.settings, event=status, slot=slot, subject=str(activation), row=row
            ),
        )


def deploy_failed(ctx: Context, deployment_id: int, error: str) -> None:
    with ctx.pool.connection() as conn, conn.transaction():
        deployments.mark_failed(conn, deployment_id, error)
        _plan_deployment(ctx, conn, deployment_id, FAILURE)


def queued_given_up(ctx: Context, deployment_id: int, error: str) -> bool:
    """A queued deploy given up before any worker took it (a hosted push that waited too long):
    failed, and planned as a failure like any; False if a worker has taken it meanwhile."""
    with ctx.pool.connection() as conn, conn.transaction():
        if not gitjobs.cancel_if_queued(conn, deployment_id, error):
            return False
        _plan_deployment(ctx, conn, deployment_id, FAILURE)
    return True


def commit_known(ctx: Context, deployment_id: int, commit_sha: str) -> None:
    """A git deploy fetched its branch: the commit it deploys is recorded, and its `pending` status planned."""
    with ctx.pool.connection() as conn, conn.transaction():
        gitjobs.set_commit(conn, deployment_id, commit_sha)
        _plan_deployment(ctx, conn, deployment_id, PENDING)


def unchanged(ctx: Context, deployment_id: int) -> None:
    """A build whose output the slot serves already: no new version, and its commit is a success."""
    with ctx.pool.connection() as conn, conn.transaction():
        deployments.mark_unchanged(conn, deployment_id)
        _plan_deployment(ctx, conn, deployment_id, SUCCESS)


def expiring(ctx: Context, within_seconds: float) -> int:
    """Plan the `expiring` notification of every live slot whose time runs out within `within_seconds`
    (once per slot and expiry time: the key holds both). Returns how many slots are expiring."""
    with ctx.pool.connection() as conn, conn.transaction():
        due = outbox.expiring_slots(conn, within_seconds)
        for slot in due:
            row = slot if slot["id"] is not None else None
            subject = f"{slot['slot']}-{int(slot['expires_at'].timestamp())}"
            _add(
                conn,
                partial(
                    feedback.slot_messages,
                    ctx.feedback,
                    ctx.settings,
                    event="expiring",
                    slot=slot["slot"],
                    subject=subject,
                    row=row,
                    version=slot["active_version"],
                    expires_at=slot["expires_at"],
                ),
            )
    return len(due)


def version_failed(ctx: Context, slot: str, version: int) -> None:
    """nginx refused the version (or could not switch to it): it never went live."""
    with ctx.pool.connection() as conn:
        versions.set_config_status(conn, slot, version, "failed")


def interrupted(ctx: Context, reason: str) -> list[int]:
    """At start: what a crash left half done failed (git deploys still queued stay queued), each
    with its `failure` status, so a commit does not stay `pending` on its forge."""
    with ctx.pool.connection() as conn, conn.transaction():
        failed = deployments.fail_unfinished(conn, reason)
        for deployment_id in failed:
            _plan_deployment(ctx, conn, deployment_id, FAILURE)
        return failed


def deployment(ctx: Context, deployment_id: int) -> dict[str, Any]:
    with ctx.pool.connection() as conn:
        row = deployments.get_deployment(conn, deployment_id)
    if row is None:
        raise NotFoundError(f"there is no deployment {deployment_id}")
    return row


def restore_slot(ctx: Context, slot: str) -> None:
    """Put nginx back to what PostgreSQL records for one slot."""
    with ctx.pool.connection() as conn:
        active = versions.active_configs(conn).get(slot)
        current = slots.get_slot(conn, slot)
    if active:
        ctx.activator.restore(slot, active["config"], releases.locate(ctx.settings.releases_dir, active["release_dir"]))
    elif current is not None and current["status"] == "expired":
        ctx.activator.restore(slot, expired_config(slot), None)
    else:
        ctx.activator.restore(slot, None, None)


def _plan_deployment(ctx: Context, conn: Conn, deployment_id: int, state: str, *, draft: bool = False) -> None:
    if ctx.feedback.empty:  # nothing declared: not even a query more per deploy
        return
    row = deployments.get_deployment(conn, deployment_id)
    if row is None:
        return
    served = not (ctx.settings.nginx_dir / "protected" / str(row["slot"])).exists()
    _add(
        conn,
        lambda: feedback.deployment_messages(
            ctx.feedback, ctx.settings, row, state, permalink_served=served, draft=draft
        ),
    )


def _add(conn: Conn, plan: Callable[[], list[feedback.Message]]) -> None:
    """Write the rows `plan` makes. A mistake in planning loses those messages (logged), never the
    change they report: a deploy must not fail because its notification could not be rendered."""
    try:
        planned = plan()
    except Exception:
        log.exception("the outbox rows of a change could not be planned; the change is recorded without them")
        return
    outbox.add(conn, planned)


@contextmanager
def _recording(ctx: Context, slot: str) -> Iterator[Conn]:
    """A transaction that records a switch nginx already made; if it fails, nginx is put back
    to what PostgreSQL records, so the two never disagree."""
    try:
        with ctx.pool.connection() as conn, conn.transaction():
            yield conn
    except Exception:
        restore_slot(ctx, slot)
        raise

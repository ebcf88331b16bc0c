"""Deleting a slot for good: offline through the one switch, then its rows, releases and build logs."""

from __future__ import annotations

from typing import Any

from drophost.errors import ConflictError, NoSuchSlotError
from drophost.names import validate_slot
from drophost.pipeline import buildlog, record, releases
from drophost.pipeline.context import Context
from drophost.store import gitjobs, slots


def delete_slot(ctx: Context, slot: str) -> dict[str, Any]:
    """Remove a slot and its whole history; the artifact store's gc reclaims the files nothing else uses."""
    validate_slot(slot)
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            if not slots.slot_exists(conn, slot):
                raise NoSuchSlotError(slot)
            if gitjobs.is_managed(conn, slot):
                # deploy.yaml would only make it again: it is removed there, which takes it offline.
                raise ConflictError(f'deploy.yaml manages slot "{slot}"; remove it there first, then delete it')
            unfinished = slots.unfinished_deployments(conn, slot)
            current = slots.get_slot(conn, slot)
        if unfinished:
            raise ConflictError(
                f'slot "{slot}" has a deploy in progress (deployment {unfinished[0]}); try again after it'
            )
        if current is not None and current["status"] in ("live", "expired"):
            # An expired slot still has its entry (nginx answers 410 for it): removed the same way.
            ctx.activator.activate(slot, None, None)
            if current["status"] == "live":
                record.taken_offline(ctx, slot=slot, status="offline", action="offline")
        with ctx.pool.connection() as conn, conn.transaction():
            deployment_ids = slots.delete_history(conn, slot)
        releases.remove(ctx.settings.releases_dir / slot)
        for deployment_id in deployment_ids:
            buildlog.remove_log(ctx.settings.builds_dir, deployment_id)
    return {"slot": slot, "status": "deleted", "deployments": len(deployment_ids)}

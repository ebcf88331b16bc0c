"""Operations on a slot that deploy nothing new: roll back, take offline, set or run out its time to live."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from drophost.errors import ConflictError, DrophostError, NoSuchSlotError, NotFoundError, UnsafeReleaseError
from drophost.names import validate_slot
from drophost.pipeline import record, releases, sitefiles
from drophost.pipeline.context import Context
from drophost.pipeline.nginxconfig import expired_config, render_site_config
from drophost.pipeline.siterules import SiteOptions
from drophost.store import audit, deployments, slots, versions

log = logging.getLogger(__name__)
# The `expiring` notification goes out this long before a slot's time to live ends.
EXPIRING_NOTICE_SECONDS = 3600


def rollback(ctx: Context, slot: str, version: int | None) -> dict[str, Any]:
    """Make a stored version live again (None: the one live before the current one)."""
    validate_slot(slot)
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            current = slots.get_slot(conn, slot)
            if current is None:
                raise NoSuchSlotError(slot)
            active = current["active_version"] if current["status"] == "live" else None
            if version is None:
                version = slots.previous_version(conn, slot, active)
                if version is None:
                    raise ConflictError(f'slot "{slot}" has no earlier version to roll back to')
            target = versions.get_version(conn, slot, version)
        if target is None:
            raise NotFoundError(f'slot "{slot}" has no config version {version}')
        if target["status"] == "pruned":
            raise ConflictError(f"the files of config version {version} were removed by retention")
        if target["status"] not in ("active", "inactive"):
            raise ConflictError(f"config version {version} never went live and cannot be made live")
        if active != version:
            _switch_to(ctx, slot, target, action="rollback")
    return {"slot": slot, "active": version}


def promote(ctx: Context, slot: str, deployment_id: int) -> dict[str, Any]:
    """Make a deployment live (a draft, or an earlier one) through the same switch as a rollback."""
    validate_slot(slot)
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            deployment = deployments.get_deployment(conn, deployment_id)
            target = versions.version_of_deployment(conn, slot, deployment_id)
            current = slots.get_slot(conn, slot)
        if current is None and (deployment is None or deployment["slot"] != slot):
            raise NoSuchSlotError(slot)
        if deployment is None or deployment["slot"] != slot:
            raise NotFoundError(f'slot "{slot}" has no deployment {deployment_id}')
        if target is None or target["status"] in ("pending", "failed"):
            raise ConflictError(f"deployment {deployment_id} was never published and cannot be made live")
        if target["status"] == "pruned":
            raise ConflictError(f"the files of deployment {deployment_id} were removed by retention")
        live = current is not None and current["status"] == "live" and current["active_version"] == target["version"]
        if not live:
            _switch_to(ctx, slot, target, action="promote")
    return {"slot": slot, "active": target["version"], "deployment_id": deployment_id}


def _switch_to(ctx: Context, slot: str, target: dict[str, Any], *, action: str) -> None:
    """nginx serves a stored version (its config and release): a link move unless its rules differ."""
    version = target["version"]
    release = releases.locate(ctx.settings.releases_dir, target["release_dir"])
    if not release.is_dir():
        raise ConflictError(f"the files of config version {version} are no longer on disk")
    try:
        releases.seal_if_needed(release)
    except UnsafeReleaseError as exc:
        raise ConflictError(f"config version {version} cannot be made live: {exc.message}") from None
    ctx.activator.activate(slot, target["config"], release)
    record.rolled_back(ctx, slot=slot, version=version, deployment_id=target["deployment_id"], action=action)


def update_site(ctx: Context, slot: str, options: SiteOptions) -> dict[str, Any]:
    """New rules for a live slot: a new config version over the same release, compiled from these
    deploy.yaml/API keys and the release's own rule files, switched like any version."""
    validate_slot(slot)
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            current = slots.get_slot(conn, slot)
            if current is None:
                raise NoSuchSlotError(slot)
            if current["status"] != "live":
                raise ConflictError(f'slot "{slot}" is {current["status"]}; roll back to a version first')
            active = versions.get_version(conn, slot, current["active_version"])
        assert active is not None
        release = releases.locate(ctx.settings.releases_dir, active["release_dir"])
        files = (active["site"] or {}).get("files", {})
        part, compiled_from = sitefiles.compile_site(ctx, slot, options, files)
        with ctx.pool.connection() as conn:
            version = versions.next_version(conn, slot)
            config = render_site_config(
                ctx.nginx.env,
                slot=slot,
                version=version,
                release_dir=release,
                deployment_id=active["deployment_id"],
                part=part,
            )
            versions.insert_config_version(
                conn,
                slot=slot,
                version=version,
                deployment_id=active["deployment_id"],
                release_dir=active["release_dir"],
                config=config.text,
                sha256=config.sha256,
                site=compiled_from,
            )
        try:
            ctx.activator.activate(slot, config.text, release)
        except DrophostError:
            record.version_failed(ctx, slot, version)
            raise
        record.rules_changed(
            ctx, slot=slot, version=version, deployment_id=active["deployment_id"], expires_at=current["expires_at"]
        )
    return {"slot": slot, "active": version}


def take_offline(ctx: Context, slot: str, *, status: str = "offline", action: str = "offline") -> dict[str, Any]:
    validate_slot(slot)
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            current = slots.get_slot(conn, slot)
        if current is None:
            raise NoSuchSlotError(slot)
        if current["status"] == "live":
            # An expired slot keeps an entry that serves no files, so visitors learn it is gone (410).
            ctx.activator.activate(slot, expired_config(slot) if status == "expired" else None, None)
            record.taken_offline(ctx, slot=slot, status=status, action=action)
    return {"slot": slot, "status": status if current["status"] == "live" else current["status"]}


def set_ttl(ctx: Context, slot: str, ttl_seconds: int | None) -> dict[str, Any]:
    """Give a live slot a new time to live from now (None: never expires)."""
    validate_slot(slot)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    with ctx.slot_lock(slot), ctx.pool.connection() as conn:
        current = slots.get_slot(conn, slot)
        if current is None:
            raise NoSuchSlotError(slot)
        if current["status"] != "live":
            raise ConflictError(f'slot "{slot}" is {current["status"]}; roll back to a version first')
        slots.set_expiry(conn, slot, expires_at)
    return {"slot": slot, "expires_at": expires_at.isoformat() if expires_at else None}


def expire_due(ctx: Context) -> list[str]:
    """Take every slot whose time to live ran out offline; return them. Slots whose time runs out
    within the hour get their `expiring` notification first (when deploy.yaml asks for one)."""
    if any("expiring" in notifier.events for notifier in ctx.feedback.notifiers):
        record.expiring(ctx, EXPIRING_NOTICE_SECONDS)
    with ctx.pool.connection() as conn:
        due = slots.due_expiries(conn)
    expired = []
    for slot in due:
        try:
            take_offline(ctx, slot, status="expired", action="expire")
            expired.append(slot)
            result = "expired"
        except DrophostError as exc:
            log.warning("could not expire slot %s: %s", slot, exc.message)
            result = f"{exc.status_code} {exc.message}"
        with ctx.pool.connection() as conn:
            audit.record(conn, actor="expiry", action="expire", target=slot, result=result)
    return expired

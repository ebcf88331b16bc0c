"""Publish: a tree of files becomes the live version of a slot, whatever its source.

Move it into releases/, seal it, render the slot's config, record a pending version, switch
nginx to it, record the outcome, then let retention drop what the slot no longer keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drophost.errors import ConflictError, DrophostError
from drophost.names import NO_TTL, validate_new_slot
from drophost.pipeline import record, releases, retention, sitefiles
from drophost.pipeline.context import Context
from drophost.pipeline.nginxconfig import render_site_config
from drophost.pipeline.siterules import SiteOptions
from drophost.store import audit, deployments, slots, versions

log = logging.getLogger(__name__)


def publish_tree(
    ctx: Context,
    incoming: Path,
    *,
    slot: str,
    files: int,
    size: int,
    ttl_seconds: int | None,
    source: str,
    deployment_id: int | None = None,
    linked: bool = False,
    site: SiteOptions | None = None,
    activate: bool = True,
    held: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """Turn a tree under releases/ into a live version of `slot` and return its deployment.

    A queued source (git) passes the `deployment_id` it already recorded; others get a new one.
    `linked`: every file is already a hard link into a store (ZIP and digest deploys link into the
    artifact store as they build the tree, git into its blob cache), so the tree is not walked
    again; otherwise each distinct file is absorbed into the artifact store here.
    `site`: the rules deploy.yaml or the API give; the tree's `_redirects` and `_headers` add theirs.
    `activate`: False publishes a draft: release, config version and permalink, the live site unchanged.
    `held`: a draft that waits to go live (a hosted push's, until git moved its branch: publish_draft),
    so nothing announces it as a draft meanwhile.
    """
    with ctx.slot_lock(slot):
        try:
            check_slot_name(ctx, slot)
        except DrophostError as exc:
            releases.remove(incoming)
            if deployment_id is not None:
                record.deploy_failed(ctx, deployment_id, exc.message)
            raise
        if deployment_id is None:
            with ctx.pool.connection() as conn:
                deployment_id = deployments.create_deployment(
                    conn, slot=slot, source=source, ttl_seconds=ttl_seconds, **fields
                )
        final = releases.release_dir(ctx.settings.releases_dir, slot, deployment_id)
        try:
            if not linked:
                with ctx.artifacts.using():
                    ctx.artifacts.absorb_tree(incoming)
            releases.promote(incoming, final)
            rule_files = sitefiles.take_rule_files(final)
            part, compiled_from = sitefiles.compile_site(ctx, slot, site or SiteOptions(), rule_files)
            releases.seal(final)
            locked = _lock_reason(ctx, slot) if activate else None
            if activate and locked is None:
                _go_live(ctx, slot, deployment_id, final, files, size, ttl_seconds, part, compiled_from)
            else:
                version = _next_version(ctx, slot, deployment_id, final, part, compiled_from)
                if held:
                    ctx.activator.check(slot, version["config"])
                record.drafted(
                    ctx, deployment_id=deployment_id, files=files, size=size, note=locked, announce=not held, **version
                )
        except DrophostError as exc:
            releases.remove(incoming)
            releases.remove(final)
            record.deploy_failed(ctx, deployment_id, exc.message)
            exc.details.setdefault("deployment_id", deployment_id)
            raise
        except Exception:
            releases.remove(incoming)
            releases.remove(final)
            record.deploy_failed(ctx, deployment_id, "internal error")
            raise
        try:
            retention.retain(ctx.pool, ctx.settings, slot, removals=ctx.removals)
        except Exception:  # the deploy is live; retention runs again next time
            log.exception("retention failed for slot %s", slot)
    return record.deployment(ctx, deployment_id)


def _lock_reason(ctx: Context, slot: str) -> str | None:
    """Why a deploy to a locked slot is kept as a draft (issue 16: nothing goes live until a promote
    or an unlock), or None when the slot is not locked."""
    with ctx.pool.connection() as conn:
        lock = audit.slot_lock(conn, slot)
    if lock is None:
        return None
    return (
        f"slot is locked ({lock['reason']}, by {lock['locked_by']}): kept as a draft, not made live;"
        " promote it, or unlock the slot to deploy"
    )


def check_slot_name(ctx: Context, slot: str) -> None:
    """422 for a new slot whose name could be read as a deployment's host name (see names.py)."""
    if "--" in slot:
        with ctx.pool.connection() as conn:
            validate_new_slot(slot, known=versions.slot_known(conn, slot))


def _next_version(
    ctx: Context, slot: str, deployment_id: int, final: Path, part: str, compiled_from: dict[str, Any]
) -> dict[str, Any]:
    """The next config version of the slot for this release, rendered: the fields of its row."""
    with ctx.pool.connection() as conn:
        number = versions.next_version(conn, slot)
    config = render_site_config(
        ctx.nginx.env, slot=slot, version=number, release_dir=final, deployment_id=deployment_id, part=part
    )
    return {
        "slot": slot,
        "version": number,
        "release_dir": str(final),
        "config": config.text,
        "sha256": config.sha256,
        "site": compiled_from,
    }


def _go_live(
    ctx: Context,
    slot: str,
    deployment_id: int,
    final: Path,
    files: int,
    size: int,
    ttl_seconds: int | None,
    part: str,
    compiled_from: dict[str, Any],
) -> None:
    fields = _next_version(ctx, slot, deployment_id, final, part, compiled_from)
    version = int(fields["version"])
    with ctx.pool.connection() as conn:
        versions.insert_config_version(conn, deployment_id=deployment_id, **fields)
    try:
        ctx.activator.activate(slot, fields["config"], final)
    except DrophostError:
        record.version_failed(ctx, slot, version)
        raise
    expires_at = _expiry(ctx, slot, ttl_seconds)
    record.deployed(
        ctx, slot=slot, version=version, deployment_id=deployment_id, expires_at=expires_at, files=files, size=size
    )


def publish_draft(ctx: Context, slot: str, deployment_id: int, *, refused: Callable[[], str | None]) -> dict[str, Any]:
    """A held draft goes live as its deploy would have (its time to live counted from now, `live`
    announced), under the slot's lock, unless `refused()` gives a reason against it (checked under
    the lock: a later push moved the branch) or the slot is locked: the draft then stays one, the
    reason its note. Returns the deployment."""
    with ctx.slot_lock(slot):
        with ctx.pool.connection() as conn:
            row = deployments.get_deployment(conn, deployment_id)
            target = versions.version_of_deployment(conn, slot, deployment_id)
        if row is None or row["slot"] != slot or target is None or target["status"] not in ("draft", "active"):
            raise ConflictError(f"deployment {deployment_id} is not a draft of slot {slot!r} waiting to go live")
        if target["status"] == "active":
            return record.deployment(ctx, deployment_id)  # made live already (one push, two refs)
        reason = refused() or _lock_reason(ctx, slot)
        if reason is not None:
            record.draft_kept(ctx, deployment_id, reason)
            return record.deployment(ctx, deployment_id)
        version = int(target["version"])
        release = releases.locate(ctx.settings.releases_dir, target["release_dir"])
        try:
            ctx.activator.activate(slot, target["config"], release)
        except DrophostError as exc:
            record.version_failed(ctx, slot, version)
            record.deploy_failed(ctx, deployment_id, exc.message)
            raise
        expires_at = _expiry(ctx, slot, row["ttl_seconds"])
        files, size = int(row["files"] or 0), int(row["bytes"] or 0)
        record.deployed(
            ctx, slot=slot, version=version, deployment_id=deployment_id, expires_at=expires_at, files=files, size=size
        )
        try:
            retention.retain(ctx.pool, ctx.settings, slot, removals=ctx.removals)
        except Exception:  # the deploy is live; retention runs again next time
            log.exception("retention failed for slot %s", slot)
    return record.deployment(ctx, deployment_id)


def _expiry(ctx: Context, slot: str, ttl_seconds: int | None) -> datetime | None:
    """A deploy's ttl counts from now, and `none` (NO_TTL) removes it. Without one, the slot keeps its
    expiry as the same moment: a redeploy changes the files, not when the slot goes away (a preview
    set to go on Friday still goes on Friday). A time already past is not kept: the deploy would go
    offline at once."""
    now = datetime.now(UTC)
    if ttl_seconds is not None:
        return now + timedelta(seconds=ttl_seconds) if ttl_seconds != NO_TTL else None
    with ctx.pool.connection() as conn:
        current = slots.get_slot(conn, slot)
    kept: datetime | None = current["expires_at"] if current is not None and current["status"] == "live" else None
    return kept if kept is not None and kept > now else None

"""Reconcile, at start: finish what a crash left, make nginx's files match PostgreSQL, drop orphans."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from drophost.errors import UnsafeReleaseError
from drophost.pipeline import record, releases
from drophost.pipeline.context import Context
from drophost.pipeline.nginxconfig import expired_config
from drophost.store import slots, versions

log = logging.getLogger(__name__)


INTERRUPTED = "interrupted: the service stopped before the deploy finished"


def reconcile(ctx: Context, *, interrupted: str = INTERRUPTED) -> dict[str, Any]:
    failed = record.interrupted(ctx, interrupted)
    with ctx.pool.connection() as conn, conn.transaction():
        active = versions.active_configs(conn)
        expired = slots.expired_slots(conn)
        kept = versions.kept_release_dirs(conn)
    root = ctx.settings.releases_dir
    live = {slot: releases.locate(root, row["release_dir"]) for slot, row in active.items()}
    refused = [slot for slot, release in live.items() if not safe_to_serve(slot, release)]
    for slot in refused:
        del live[slot]
    configs = {slot: expired_config(slot) for slot in expired}
    configs.update((slot, row["config"]) for slot, row in active.items())
    outcome = ctx.activator.serve_recorded(configs, live)
    removed = releases.orphaned(root, kept)
    for path in removed:
        releases.remove(path)
    return {
        "failed_deployments": failed,
        "sites_changed": outcome.sites_changed,
        "links_changed": outcome.links_changed,
        "orphans_removed": len(removed),
        "releases_refused": refused,
    }


def safe_to_serve(slot: str, release: Path) -> bool:
    """A live release from before sealing existed is checked and sealed once (False: refused)."""
    try:
        releases.seal_if_needed(release)
    except UnsafeReleaseError as exc:
        log.error("slot %s is not served: its live release was refused: %s", slot, exc.message)
        return False
    except FileNotFoundError:
        log.warning("slot %s: its live release is not on disk", slot)
    except OSError as exc:
        # What could not be checked is not served (start-up goes on for every other slot).
        log.error("slot %s is not served: its live release could not be checked (%s)", slot, exc.strerror)
        return False
    return True

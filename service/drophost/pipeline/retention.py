"""Retention and garbage collection: keep the last N versions per slot, drop what nothing needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.pipeline import buildlog, releases
from drophost.pipeline.artifacts import ArtifactStore, links_in
from drophost.settings import Settings
from drophost.store import uploads, versions

SlotLock = Callable[[str], AbstractContextManager[None]]

# Uploads that were never finalised are forgotten after a day.
_STALE_UPLOAD_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Prune:
    slot: str
    version: int
    release_dir: str


@dataclass
class Report:
    dry_run: bool
    releases: list[Prune] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "releases": [{"slot": p.slot, "version": p.version} for p in self.releases],
            "blobs": self.blobs,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


def plan_retention(rows: list[dict[str, Any]], keep: int) -> list[Prune]:
    """Versions (newest first per slot) beyond the newest `keep`, except active and pinned ones (pure)."""
    prunes: list[Prune] = []
    seen: dict[str, int] = {}
    for row in rows:
        rank = seen.get(row["slot"], 0)
        seen[row["slot"]] = rank + 1
        if rank < keep or row["status"] == "active" or row["pinned"]:
            continue
        prunes.append(Prune(slot=row["slot"], version=int(row["version"]), release_dir=row["release_dir"]))
    return prunes


def retain(pool: ConnectionPool[Any], settings: Settings, slot: str, *, dry_run: bool = False) -> list[Prune]:
    """Apply retention to one slot (the caller holds the slot's lock)."""
    with pool.connection() as conn:
        rows = versions.retention_candidates(conn, slot)
    prunes = plan_retention(rows, settings.keep_versions)
    if prunes and not dry_run:
        with pool.connection() as conn:
            # Recorded first: a version marked pruned is never made live, even if removal stops half-way.
            versions.mark_pruned(conn, slot, [p.version for p in prunes])
        for prune in prunes:
            releases.remove(releases.locate(settings.releases_dir, prune.release_dir))
    if not dry_run:
        drop_build_logs(pool, settings, slot)
    return prunes


def drop_build_logs(pool: ConnectionPool[Any], settings: Settings, slot: str) -> list[int]:
    """Remove the slot's build logs whose release retention removed (or that never had one and are
    older than every kept release): a log lives as long as what it built."""
    logged = buildlog.logged_ids(settings.builds_dir)
    if not logged:
        return []
    with pool.connection() as conn:
        doomed = versions.logs_past_retention(conn, slot, logged)
    for deployment_id in doomed:
        buildlog.remove_log(settings.builds_dir, deployment_id)
    return doomed


def collect(
    pool: ConnectionPool[Any], settings: Settings, artifacts: ArtifactStore, slot_lock: SlotLock, *, dry_run: bool
) -> Report:
    """Retention on every slot, then remove the blobs no release links to any more."""
    started = time.monotonic()
    report = Report(dry_run=dry_run)
    with pool.connection() as conn:
        slots = sorted({row["slot"] for row in versions.retention_candidates(conn)})
        if not dry_run:
            uploads.delete_stale_uploads(conn, _STALE_UPLOAD_SECONDS)
    for slot in slots:
        with slot_lock(slot):
            report.releases.extend(retain(pool, settings, slot, dry_run=dry_run))
    with artifacts.sweeping():
        root = settings.releases_dir
        doomed = {releases.locate(root, p.release_dir) for p in report.releases} if dry_run else set()
        for blob in artifacts.unreferenced(ignoring=doomed):
            report.blobs += 1
            report.bytes += blob.stat().st_size
            if not dry_run:
                blob.unlink()
        # The git source's per-oid cache (<data>/git/blobs) is swept the same way.
        for blob in unreferenced_git_blobs(settings.git_dir / "blobs", ignoring=doomed):
            report.blobs += 1
            report.bytes += blob.stat().st_size
            if not dry_run:
                blob.unlink()
        if not dry_run:
            artifacts.forget_dangling_hints()
    report.seconds = time.monotonic() - started
    return report


def unreferenced_git_blobs(folder: Path, *, ignoring: set[Path]) -> list[Path]:
    """Cached git blobs no release links to (a blob written but never linked has one link too)."""
    if not folder.is_dir():
        return []
    doomed_links = links_in(ignoring)
    found = []
    for blob in folder.iterdir():
        if blob.name.endswith(".partial") or not blob.is_file():
            continue
        info = blob.stat()
        if info.st_nlink - doomed_links.get(info.st_ino, 0) <= 1:
            found.append(blob)
    return found

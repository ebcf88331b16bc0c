"""Retention and garbage collection: keep the last N versions per slot, drop what nothing needs."""

from __future__ import annotations

import logging
import threading
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

log = logging.getLogger(__name__)

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


def retain(
    pool: ConnectionPool[Any],
    settings: Settings,
    slot: str,
    *,
    dry_run: bool = False,
    removals: Removals | None = None,
) -> list[Prune]:
    """Apply retention to one slot (the caller holds the slot's lock).

    With `removals`, the releases it drops are renamed aside at once (no address serves them from
    then on) and their files removed after the caller let go of the lock: a deploy answers without
    deleting 1,000 files first. Without it, they are removed before this returns. Either way the
    slot's leftovers (a release whose removal a crash stopped) go too."""
    with pool.connection() as conn:
        rows = versions.retention_candidates(conn, slot)
        prunes = plan_retention(rows, settings.keep_versions)
        if dry_run:
            return prunes
        if prunes:
            # Recorded first: a version marked pruned is never made live, even if removal stops half-way.
            # Only what was marked goes: a version pinned since the read keeps its files.
            marked = versions.mark_pruned(conn, slot, [p.version for p in prunes])
            prunes = [p for p in prunes if p.version in marked]
    pruned = {p.version for p in prunes}
    kept = {row["release_dir"] for row in rows if int(row["version"]) not in pruned}
    doomed = releases.leftovers(settings.releases_dir, slot, kept)
    if removals is None:
        for path in doomed:
            releases.remove(path)
    else:
        removals.remove_later(slot, [_set_aside(path) for path in doomed])
    drop_build_logs(pool, settings, slot)
    return prunes


def _set_aside(path: Path) -> Path:
    if path.name.endswith(releases.REMOVING):
        return path
    try:
        return releases.set_aside(path)
    except OSError:
        return path  # removed later where it is, as it would have been


class Removals:
    """Releases retention set aside, removed in the background: one worker per slot at a time,
    holding the slot's lock while it removes (so never beside a deploy, gc or another removal of
    that slot). What it has not removed when the process stops is a leftover of the slot."""

    def __init__(self, slot_lock: SlotLock) -> None:
        self._slot_lock = slot_lock
        self._queued: dict[str, list[Path]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    def remove_later(self, slot: str, paths: list[Path]) -> None:
        if not paths:
            return
        with self._guard:
            self._queued.setdefault(slot, []).extend(paths)
            if slot in self._workers:
                return
            worker = threading.Thread(target=self._work, args=(slot,), name=f"removals-{slot}", daemon=True)
            # Started under the guard: a thread that failed to start must not stay registered, or
            # every later removal of the slot would wait for it forever.
            worker.start()
            self._workers[slot] = worker

    def wait(self, timeout: float | None = None, *, slot: str | None = None) -> None:
        """Until every removal queued so far (of `slot`, or of all) is done, or `timeout` seconds."""
        with self._guard:
            workers = [worker for name, worker in self._workers.items() if slot is None or name == slot]
        for worker in workers:
            worker.join(timeout)

    def _work(self, slot: str) -> None:
        try:
            while True:
                with self._slot_lock(slot):
                    with self._guard:
                        paths = self._queued.pop(slot, [])
                        if not paths:
                            del self._workers[slot]  # with the check: a path queued after it starts a worker
                            return
                    for path in paths:
                        try:
                            releases.remove(path)
                        except Exception:  # a leftover: the slot's next retention or gc removes it
                            log.exception("could not remove %s", path)
        except Exception:  # the lock failed: what is queued stays, the next removal of the slot starts a worker
            log.exception("removals of slot %s stopped", slot)
            with self._guard:
                if self._workers.get(slot) is threading.current_thread():
                    del self._workers[slot]


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
    root = settings.releases_dir
    doomed: set[Path] = set()
    for slot in slots:
        with slot_lock(slot):
            prunes = retain(pool, settings, slot, dry_run=dry_run)
            report.releases.extend(prunes)
            if dry_run:
                doomed.update(releases.locate(root, p.release_dir) for p in prunes)
                doomed.update(releases.leftovers(root, slot, _kept(pool, slot)))
    with artifacts.sweeping():
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


def _kept(pool: ConnectionPool[Any], slot: str) -> set[str]:
    with pool.connection() as conn:
        return {row["release_dir"] for row in versions.retention_candidates(conn, slot)}


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

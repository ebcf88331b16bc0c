"""The pipeline: validate, release, render, nginx -t, switch, record. It only orders the steps."""

from __future__ import annotations

import logging
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from psycopg_pool import ConnectionPool

from drophost.errors import (
    ConflictError,
    DrophostError,
    InvalidArchiveError,
    NotFoundError,
    UnsafeReleaseError,
)
from drophost.names import validate_slot
from drophost.pipeline import releases, retention
from drophost.pipeline.activate import SwitchBatcher
from drophost.pipeline.archive import ArchiveLimits, extract, open_archive, plan_extraction
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.nginx import Nginx
from drophost.pipeline.nginxconfig import render_site_config
from drophost.settings import Settings
from drophost.store import deployments, rows, slots, versions

log = logging.getLogger(__name__)


class Deployer:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], nginx: Nginx) -> None:
        self.settings = settings
        self.pool = pool
        self.nginx = nginx
        self.artifacts = ArtifactStore(settings.data_dir / "store")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # nginx -t, the file swap and the reload of different slots must not interleave; it is brief.
        self._switch_lock = threading.Lock()
        # Switches waiting for that lock are applied together: one nginx -t, one reload.
        self._switches = SwitchBatcher(nginx, self._switch_lock)

    @contextmanager
    def slot_lock(self, slot: str) -> Iterator[None]:
        """Serialise everything that changes one slot; other slots proceed in parallel."""
        with self._locks_guard:
            lock = self._locks.setdefault(slot, threading.Lock())
        with lock:
            yield

    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits.from_settings(self.settings)

    # -- deploy ----------------------------------------------------------------------------
    def deploy_archive(
        self, upload: IO[bytes], *, slot: str, source_name: str | None, ttl_seconds: int | None
    ) -> dict[str, Any]:
        """ZIP in, live site out. Bad input raises before anything is written or recorded."""
        validate_slot(slot)
        incoming = releases.incoming_dir(self.settings.releases_dir)
        try:
            with open_archive(upload) as archive:
                plan = plan_extraction(archive, upload, self.archive_limits())
                self.artifacts.prepare()
                with self.artifacts.using():
                    extract(archive, plan, incoming, self.artifacts)
        except DrophostError:
            releases.remove(incoming)
            raise
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
            releases.remove(incoming)
            raise InvalidArchiveError(f"the archive could not be extracted ({type(exc).__name__})") from None
        return self.publish_tree(
            incoming,
            slot=slot,
            files=len(plan.files),
            size=plan.total_bytes,
            ttl_seconds=ttl_seconds,
            source=deployments.SOURCE_ZIP,
            source_name=source_name,
            trigger="upload",
        )

    def publish_tree(
        self,
        incoming: Path,
        *,
        slot: str,
        files: int,
        size: int,
        ttl_seconds: int | None,
        source: str,
        deployment_id: int | None = None,
        linked: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Turn an extracted tree into a live version of `slot` (shared by every source).

        A queued source (git) passes the `deployment_id` it already recorded; others get a new one.
        `linked`: every file is already a hard link into a store (git's blob cache), so the tree is
        not walked to absorb it.
        """
        with self.slot_lock(slot):
            if deployment_id is None:
                with self.pool.connection() as conn:
                    deployment_id = deployments.create_deployment(
                        conn, slot=slot, source=source, ttl_seconds=ttl_seconds, **fields
                    )
            final = releases.release_dir(self.settings.releases_dir, slot, deployment_id)
            try:
                # Trees from other sources are plain files: store each distinct file once.
                if not linked:
                    with self.artifacts.using():
                        self.artifacts.absorb_tree(incoming)
                releases.promote(incoming, final)
                releases.seal(final)
                self._go_live(slot, deployment_id, final, files, size, ttl_seconds)
            except DrophostError as exc:
                releases.remove(incoming)
                releases.remove(final)
                with self.pool.connection() as conn:
                    deployments.mark_failed(conn, deployment_id, exc.message)
                exc.details.setdefault("deployment_id", deployment_id)
                raise
            except Exception:
                releases.remove(incoming)
                releases.remove(final)
                with self.pool.connection() as conn:
                    deployments.mark_failed(conn, deployment_id, "internal error")
                raise
            try:
                retention.retain(self.pool, self.settings, slot)
            except Exception:  # the deploy is live; retention runs again next time
                log.exception("retention failed for slot %s", slot)
        return self.deployment(deployment_id)

    def _go_live(
        self, slot: str, deployment_id: int, final: Path, files: int, size: int, ttl_seconds: int | None
    ) -> None:
        with self.pool.connection() as conn:
            version = versions.next_version(conn, slot)
            config = render_site_config(
                self.nginx.env, slot=slot, version=version, release_dir=final, deployment_id=deployment_id
            )
            versions.insert_config_version(
                conn,
                slot=slot,
                version=version,
                deployment_id=deployment_id,
                release_dir=str(final),
                config=config.text,
                sha256=config.sha256,
            )
        try:
            self._switch(slot, config.text, final)
        except DrophostError:
            with self.pool.connection() as conn:
                versions.set_config_status(conn, slot, version, "failed")
            raise
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds) if ttl_seconds else None
        with self._recording(slot) as conn:
            slots.activate(
                conn, slot=slot, version=version, deployment_id=deployment_id, action="deploy", expires_at=expires_at
            )
            deployments.mark_ready(conn, deployment_id, files=files, size=size)

    # -- rollback, offline, expiry -------------------------------------------------------------
    def rollback(self, slot: str, version: int | None) -> dict[str, Any]:
        validate_slot(slot)
        with self.slot_lock(slot):
            with self.pool.connection() as conn:
                current = slots.get_slot(conn, slot)
                if current is None:
                    raise NotFoundError(f'there is no slot "{slot}"')
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
            if active == version:
                return {"slot": slot, "active": version}
            release = releases.locate(self.settings.releases_dir, target["release_dir"])
            if not release.is_dir():
                raise ConflictError(f"the files of config version {version} are no longer on disk")
            try:
                releases.seal_if_needed(release)
            except UnsafeReleaseError as exc:
                raise ConflictError(f"config version {version} cannot be made live: {exc.message}") from None
            self._switch(slot, target["config"], release)
            with self._recording(slot) as conn:
                slots.activate(
                    conn,
                    slot=slot,
                    version=version,
                    deployment_id=target["deployment_id"],
                    action="rollback",
                    expires_at=None,
                )
        return {"slot": slot, "active": version}

    def take_offline(self, slot: str, *, status: str = "offline", action: str = "delete") -> dict[str, Any]:
        validate_slot(slot)
        with self.slot_lock(slot):
            with self.pool.connection() as conn:
                current = slots.get_slot(conn, slot)
            if current is None:
                raise NotFoundError(f'there is no slot "{slot}"')
            if current["status"] == "live":
                self._switch(slot, None, None)
                with self._recording(slot) as conn:
                    slots.deactivate(conn, slot=slot, status=status, action=action)
        return {"slot": slot, "status": status if current["status"] == "live" else current["status"]}

    def set_ttl(self, slot: str, ttl_seconds: int | None) -> dict[str, Any]:
        """Give a live slot a new time to live from now (None: never expires)."""
        validate_slot(slot)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds) if ttl_seconds else None
        with self.slot_lock(slot), self.pool.connection() as conn:
            current = slots.get_slot(conn, slot)
            if current is None:
                raise NotFoundError(f'there is no slot "{slot}"')
            if current["status"] != "live":
                raise ConflictError(f'slot "{slot}" is {current["status"]}; roll back to a version first')
            slots.set_expiry(conn, slot, expires_at)
        return {"slot": slot, "expires_at": expires_at.isoformat() if expires_at else None}

    def expire_due(self) -> list[str]:
        with self.pool.connection() as conn:
            due = slots.due_expiries(conn)
        expired = []
        for slot in due:
            try:
                self.take_offline(slot, status="expired", action="expire")
                expired.append(slot)
            except DrophostError as exc:
                log.warning("could not expire slot %s: %s", slot, exc.message)
        return expired

    # -- nginx -----------------------------------------------------------------------------
    def _switch(self, slot: str, text: str | None, release: Path | None) -> None:
        """Make nginx serve `release` for `slot` with config `text` (None: take the slot offline).

        A config nginx does not have yet is only installed once nginx accepts the whole
        configuration; a config it has already (another version of a live slot) moves the link.
        """
        old_workers = self._switches.switch(slot, text, release)
        if old_workers is not None and not self.nginx.wait_for_reload(old_workers, slot, text is not None):
            log.warning("nginx did not confirm slot %s in time", slot)

    @contextmanager
    def _recording(self, slot: str) -> Iterator[rows.Conn]:
        """A transaction that records a switch nginx already made; if it fails, nginx is put back
        to what PostgreSQL records, so the two never disagree."""
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except Exception:
            self.restore_slot(slot)
            raise

    def restore_slot(self, slot: str) -> None:
        """Put nginx back to what PostgreSQL records for one slot."""
        with self.pool.connection() as conn:
            active = versions.active_configs(conn).get(slot)
        with self._switch_lock:
            text = active["config"] if active else None
            changed = not (text is not None and self.nginx.has_entry(slot, text))
            self.nginx.install(slot, text)
            if active:
                self.nginx.point(slot, releases.locate(self.settings.releases_dir, active["release_dir"]))
            if changed and self.nginx.is_running():
                self.nginx.reload()
            if not active:
                self.nginx.point(slot, None)

    def reconcile(self) -> dict[str, Any]:
        """At start: finish what a crash left, make nginx's files match PostgreSQL, drop orphans."""
        with self.pool.connection() as conn, conn.transaction():
            failed = deployments.fail_unfinished(conn, "interrupted: the service stopped before the deploy finished")
            active = versions.active_configs(conn)
            kept = versions.kept_release_dirs(conn)
        root = self.settings.releases_dir
        live = {slot: releases.locate(root, row["release_dir"]) for slot, row in active.items()}
        refused = [slot for slot, release in live.items() if not _safe_to_serve(slot, release)]
        for slot in refused:
            del live[slot]
        old_workers: frozenset[int] | None = None
        with self._switch_lock:
            # Links first: a slot nginx already serves switches files the moment its link moves.
            links_changed = self.nginx.point_all(live)
            changed = self.nginx.install_all({slot: row["config"] for slot, row in active.items()})
            for leftover in self.nginx.staging_dir.iterdir():
                leftover.unlink()
            if changed and self.nginx.is_running():
                self.nginx.test()
                old_workers = self.nginx.reload()
        # Start-up is over only when nginx serves what PostgreSQL records, not merely was told to
        # (after the old workers let go, one request per live slot checks it).
        for slot in live:
            if old_workers is not None and not self.nginx.wait_for_reload(old_workers, slot, True):
                log.warning("nginx did not confirm slot %s in time", slot)
        removed = releases.orphaned(self.settings.releases_dir, kept)
        for path in removed:
            releases.remove(path)
        return {
            "failed_deployments": failed,
            "sites_changed": changed,
            "links_changed": links_changed,
            "orphans_removed": len(removed),
            "releases_refused": refused,
        }

    # -- reads -----------------------------------------------------------------------------
    def collect_garbage(self, *, dry_run: bool) -> retention.Report:
        """Retention on every slot, then the artifacts and git blobs nothing links to."""
        return retention.collect(self.pool, self.settings, self.artifacts, self.slot_lock, dry_run=dry_run)

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = deployments.get_deployment(conn, deployment_id)
        if row is None:
            raise NotFoundError(f"there is no deployment {deployment_id}")
        return row


def _safe_to_serve(slot: str, release: Path) -> bool:
    """At start: a live release from before sealing existed is checked and sealed once (False: refused)."""
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

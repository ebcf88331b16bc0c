"""The Deployer: what the service builds once and its handlers call.

It holds the pieces the pipeline steps share (Context) and hands each call to the step that
does it: archive (ZIP intake), publish, slotops, reconcile, retention, record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from drophost.pipeline import archive, deletion, publish, reconcile, record, retention, slotops
from drophost.pipeline.archive import ArchiveLimits
from drophost.pipeline.context import Context
from drophost.pipeline.siterules import SiteOptions


class Deployer(Context):
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits.from_settings(self.settings)

    def deploy_archive(
        self,
        upload: IO[bytes],
        *,
        slot: str,
        source_name: str | None,
        ttl_seconds: int | None,
        site: SiteOptions | None = None,
        activate: bool = True,
    ) -> dict[str, Any]:
        return archive.deploy_archive(
            self, upload, slot=slot, source_name=source_name, ttl_seconds=ttl_seconds, site=site, activate=activate
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
        site: SiteOptions | None = None,
        activate: bool = True,
        held: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        return publish.publish_tree(
            self,
            incoming,
            slot=slot,
            files=files,
            size=size,
            ttl_seconds=ttl_seconds,
            source=source,
            deployment_id=deployment_id,
            linked=linked,
            site=site,
            activate=activate,
            held=held,
            **fields,
        )

    def publish_draft(self, slot: str, deployment_id: int, *, refused: Callable[[], str | None]) -> dict[str, Any]:
        return publish.publish_draft(self, slot, deployment_id, refused=refused)

    def rollback(self, slot: str, version: int | None) -> dict[str, Any]:
        return slotops.rollback(self, slot, version)

    def promote(self, slot: str, deployment_id: int) -> dict[str, Any]:
        return slotops.promote(self, slot, deployment_id)

    def take_offline(self, slot: str, *, status: str = "offline", action: str = "offline") -> dict[str, Any]:
        return slotops.take_offline(self, slot, status=status, action=action)

    def delete_slot(self, slot: str) -> dict[str, Any]:
        return deletion.delete_slot(self, slot)

    def update_site(self, slot: str, options: SiteOptions) -> dict[str, Any]:
        return slotops.update_site(self, slot, options)

    def set_ttl(self, slot: str, ttl_seconds: int | None) -> dict[str, Any]:
        return slotops.set_ttl(self, slot, ttl_seconds)

    def expire_due(self) -> list[str]:
        return slotops.expire_due(self)

    def reconcile(self, *, interrupted: str = reconcile.INTERRUPTED) -> dict[str, Any]:
        return reconcile.reconcile(self, interrupted=interrupted)

    def collect_garbage(self, *, dry_run: bool) -> retention.Report:
        """Retention on every slot, then the artifacts and git blobs nothing links to."""
        return retention.collect(self.pool, self.settings, self.artifacts, self.slot_lock, dry_run=dry_run)

    def deployment(self, deployment_id: int) -> dict[str, Any]:
        return record.deployment(self, deployment_id)

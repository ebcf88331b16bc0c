"""Digest uploads: the client sends its file list (path -> sha256), uploads only what the artifact
store lacks, then deploys. (The uploads table calls the file list its manifest.)"""

from __future__ import annotations

import uuid
from typing import Any

from drophost.digests import is_digest
from drophost.errors import ConflictError, InvalidArchiveError, NotFoundError, ValidationError
from drophost.names import validate_slot
from drophost.pipeline import releases, siterules
from drophost.pipeline.archive import ArchiveLimits, PathSet, check_entry_name, is_published
from drophost.pipeline.context import Context
from drophost.pipeline.publish import check_slot_name, publish_tree
from drophost.pipeline.siterules import SiteOptions
from drophost.store import deployments, uploads


def check_file_list(files: object, limits: ArchiveLimits) -> dict[str, str]:
    """path -> digest, with every path checked like a ZIP entry name; dotfiles dropped (pure)."""
    if not isinstance(files, dict) or not files:
        raise ValidationError("files must be a non-empty object mapping paths to sha256 digests", field="files")
    if len(files) > limits.max_entries:
        raise ValidationError(f"a deploy may hold at most {limits.max_entries} files", field="files")
    paths = PathSet()
    published: dict[str, str] = {}
    for path, digest in files.items():
        if not isinstance(digest, str) or not is_digest(digest):
            raise ValidationError(f"the digest of {str(path)[:120]!r} is not a lowercase sha256 hex", field="files")
        if path.endswith("/"):
            raise ValidationError(f"{path[:120]!r} names a folder; list files only", field="files")
        try:
            parts = check_entry_name(path, limits)
            paths.add_file(path, parts)
        except InvalidArchiveError as exc:
            raise ValidationError(exc.message.replace("the entry", "the path"), field="files") from None
        if is_published(parts):
            published["/".join(parts)] = digest
    paths.finish()
    if not published:
        raise ValidationError("the deploy contains no files to publish", field="files")
    return published


class DigestUploads:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.artifacts = ctx.artifacts

    def create(
        self,
        *,
        slot: str,
        ttl_seconds: int | None,
        files: object,
        source_name: str | None = None,
        site: SiteOptions | None = None,
    ) -> dict[str, Any]:
        upload_id, row = self.start(slot=slot, ttl_seconds=ttl_seconds, files=files, source_name=source_name, site=site)
        file_list: dict[str, str] = row["manifest"]
        return {
            "upload_id": upload_id,
            "slot": slot,
            "files": len(file_list),
            "missing": self.artifacts.missing(file_list.values()),
        }

    def start(
        self,
        *,
        slot: str,
        ttl_seconds: int | None,
        files: object,
        source_name: str | None = None,
        site: SiteOptions | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Check and record a new upload: its id, and its row as `open_upload` would read it."""
        validate_slot(slot)
        check_slot_name(self.ctx, slot)
        if source_name is not None and (len(source_name) > 255 or not source_name.isprintable()):
            raise ValidationError("name must be printable and at most 255 characters", field="name")
        file_list = check_file_list(files, ArchiveLimits.from_settings(self.ctx.settings))
        upload_id = str(uuid.uuid4())
        self.artifacts.prepare()
        row: dict[str, Any] = {
            "slot": slot,
            "ttl_seconds": ttl_seconds,
            "manifest": file_list,
            "source_name": source_name or None,
            "site": siterules.options_json(site) if site is not None else None,
        }
        with self.ctx.pool.connection() as conn:
            uploads.create_upload(
                conn,
                upload_id=upload_id,
                slot=slot,
                ttl_seconds=ttl_seconds,
                manifest=file_list,
                source_name=row["source_name"],
                site=row["site"],
            )
        return upload_id, row

    def open_upload(self, upload_id: str) -> dict[str, Any]:
        try:
            uuid.UUID(upload_id)
        except ValueError:
            raise NotFoundError(f"there is no upload {upload_id[:40]!r}") from None
        with self.ctx.pool.connection() as conn:
            row = uploads.get_upload(conn, upload_id)
        if row is None:
            raise NotFoundError(f"there is no upload {upload_id}")
        if row["finalized_at"] is not None:
            raise ConflictError(f"upload {upload_id} was already deployed", deployment_id=row["deployment_id"])
        return row

    def wanted(self, upload_id: str) -> frozenset[str]:
        """The digests an open upload's file list names: the blobs a batch may carry."""
        return frozenset(self.open_upload(upload_id)["manifest"].values())

    def status(self, upload_id: str) -> dict[str, Any]:
        """An open upload and the digests still missing: what a client resumes with."""
        row = self.open_upload(upload_id)
        file_list: dict[str, str] = row["manifest"]
        return {
            "upload_id": upload_id,
            "slot": row["slot"],
            "files": len(file_list),
            "missing": self.artifacts.missing(file_list.values()),
        }

    def check_blob(self, upload_id: str, digest: str) -> None:
        row = self.open_upload(upload_id)
        if not is_digest(digest):
            raise ValidationError("the blob name must be a lowercase sha256 hex digest", field="digest")
        if digest not in set(row["manifest"].values()):
            raise ValidationError("that digest is not part of this upload's file list", field="digest")

    def abandon(self, upload_id: str) -> None:
        """Forget an upload its own request failed to fill (POST /api/uploads/deploy): bad input
        leaves nothing behind. The blobs already checked stay in the store, as after a batch."""
        with self.ctx.pool.connection() as conn:
            uploads.delete_open_upload(conn, upload_id)

    def finalize(self, upload_id: str, *, activate: bool = True) -> dict[str, Any]:
        row = self.open_upload(upload_id)
        sizes, missing = self.artifacts.sizes(row["manifest"].values())
        if missing:
            raise ConflictError(f"{len(missing)} files have not been uploaded yet", missing=missing[:1000])
        return self._publish(upload_id, row, sizes, activate=activate)

    def finalize_if_complete(
        self, upload_id: str, row: dict[str, Any], *, activate: bool = True
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """(the deployment, []) when the store has every file of the upload started as `row`; else
        (None, the digests it lacks), and the upload stays open for them (POST .../batch, .../finalize)."""
        sizes, missing = self.artifacts.sizes(row["manifest"].values())
        if missing:
            return None, missing
        return self._publish(upload_id, row, sizes, activate=activate), []

    def _publish(self, upload_id: str, row: dict[str, Any], sizes: dict[str, int], *, activate: bool) -> dict[str, Any]:
        file_list: dict[str, str] = row["manifest"]
        total = sum(sizes[digest] for digest in file_list.values())
        limit = self.ctx.settings.max_unpacked_bytes
        if total > limit:
            raise ValidationError(f"the deploy is larger than {limit} bytes", field="files")
        incoming = releases.incoming_dir(self.ctx.settings.releases_dir)
        try:
            with self.artifacts.using():
                incoming.mkdir(mode=0o755)
                self.artifacts.link_tree(file_list, incoming)
        except FileNotFoundError:
            releases.remove(incoming)
            raise ConflictError("some files were removed from the store meanwhile; upload them again") from None
        except OSError:
            releases.remove(incoming)
            raise
        with self.ctx.pool.connection() as conn:
            # Claim first so two finalize calls cannot both deploy.
            if not uploads.claim_upload(conn, upload_id):
                releases.remove(incoming)
                raise ConflictError(f"upload {upload_id} was already deployed")
        deployment = publish_tree(
            self.ctx,
            incoming,
            slot=row["slot"],
            files=len(file_list),
            size=total,
            ttl_seconds=row["ttl_seconds"],
            source=deployments.SOURCE_DIGEST,
            trigger="upload",
            source_name=row["source_name"],
            linked=True,  # every file was linked from the artifact store above
            site=siterules.parse_options(row["site"], file="site") if row.get("site") else None,
            activate=activate,
        )
        with self.ctx.pool.connection() as conn:
            uploads.set_upload_deployment(conn, upload_id, deployment["id"])
        return deployment

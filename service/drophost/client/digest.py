"""Client side of digest uploads: hash a folder, send the manifest, upload only what is missing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drophost.client.http import EXIT_USAGE, ApiClient, ClientError
from drophost.digests import file_digest

Progress = Callable[[int, int], None]


# The server publishes no dotfile or dot-folder but this folder at the top (releases.is_published_path;
# the client imports no server module).
WELL_KNOWN = ".well-known"


def scan_folder(folder: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, skipping symlinks and dotfiles (which are never published)."""
    found: dict[str, Path] = {}
    for walked, dirs, names in os.walk(folder):
        top = Path(walked) == folder
        dirs[:] = sorted(
            d
            for d in dirs
            if (not d.startswith(".") or (top and d == WELL_KNOWN)) and not (Path(walked) / d).is_symlink()
        )
        for name in sorted(names):
            path = Path(walked) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(folder).as_posix()] = path
    return found


def deploy_folder(
    client: ApiClient,
    folder: Path,
    *,
    slot: str,
    ttl: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Deploy a folder by digest: only files the server lacks are sent. Returns the deployment."""
    files = scan_folder(folder)
    if not files:
        raise ClientError(f"{folder} has no files to publish", EXIT_USAGE)
    digests = {rel: file_digest(path) for rel, path in files.items()}
    body: dict[str, Any] = {"slot": slot, "files": digests, "name": (folder.resolve().name or "site")[:255]}
    if ttl:
        body["ttl"] = ttl
    if force:
        body["force"] = True
    started = client.request("POST", "/api/uploads", body)
    missing = sorted(set(started["missing"]))
    by_digest = {digest: files[rel] for rel, digest in digests.items()}
    total = sum(by_digest[d].stat().st_size for d in missing)
    sent = 0
    if progress:
        progress(0, total)
    for digest in missing:
        path = by_digest[digest]
        size = path.stat().st_size
        with open(path, "rb") as handle:
            client.put_file(f"/api/uploads/{started['upload_id']}/blobs/{digest}", handle, size)
        sent += size
        if progress:
            progress(sent, total)
    result: dict[str, Any] = client.request("POST", f"/api/uploads/{started['upload_id']}/finalize", {})
    result["uploaded_files"] = len(missing)
    result["uploaded_bytes"] = total
    return result

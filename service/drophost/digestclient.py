"""Client side of digest uploads: hash a folder, send the manifest, upload only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[int, int], None]
_CHUNK = 1024 * 1024


class ClientError(Exception):
    """One readable line for the user; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def scan_folder(folder: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, skipping symlinks and dotfiles (which are never published)."""
    found: dict[str, Path] = {}
    for walked, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (Path(walked) / d).is_symlink())
        for name in sorted(names):
            path = Path(walked) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            found[path.relative_to(folder).as_posix()] = path
    return found


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def request_json(
    server: str, token: str, method: str, path: str, body: Any = None, *, data: Any = None, length: int | None = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif data is not None:
        headers["Content-Type"] = "application/octet-stream"
        if length is not None:
            headers["Content-Length"] = str(length)
    request = urllib.request.Request(server.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            message = exc.reason
        raise ClientError(str(message), exc.code) from None
    except urllib.error.URLError as exc:
        raise ClientError(f"cannot reach {server}: {exc.reason}") from None


def deploy_folder(
    server: str, token: str, folder: Path, *, slot: str, ttl: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Deploy a folder by digest: only files the server lacks are sent. Returns the deployment."""
    files = scan_folder(folder)
    if not files:
        raise ClientError(f"{folder} has no files to publish")
    digests = {rel: file_digest(path) for rel, path in files.items()}
    body: dict[str, Any] = {"slot": slot, "files": digests}
    if ttl:
        body["ttl"] = ttl
    started = request_json(server, token, "POST", "/api/uploads", body)
    missing = set(started["missing"])
    by_digest = {digest: files[rel] for rel, digest in digests.items()}
    total = sum(by_digest[d].stat().st_size for d in missing)
    sent = 0
    if progress:
        progress(0, total)
    for digest in sorted(missing):
        path = by_digest[digest]
        size = path.stat().st_size
        with open(path, "rb") as handle:
            request_json(
                server, token, "PUT", f"/api/uploads/{started['upload_id']}/blobs/{digest}", data=handle, length=size
            )
        sent += size
        if progress:
            progress(sent, total)
    result: dict[str, Any] = request_json(server, token, "POST", f"/api/uploads/{started['upload_id']}/finalize", {})
    result["uploaded_files"] = len(missing)
    result["uploaded_bytes"] = total
    return result

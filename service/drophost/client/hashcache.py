"""The digests of a folder's files, remembered between deploys, as git's index remembers its stat data.

Hashing is most of what the CLI itself does when one file of a large site changed: 26 MB of
sha256 and 1,000 file opens for one new digest. A file whose size, modification and change times
and inode are what they were when it was hashed has the digest it had then. The change time
(`st_ctime_ns`) is set by the kernel on every write, rename or `touch`, and no program can set it
back, so an edit that keeps the size and restores the modification time is still seen.

A file changed again within the same clock tick as it was hashed could keep all four values
("racily clean", in git's words). As git does with its index, the clock that decides is the file
system's own: a marker file is written just before hashing starts, and only entries whose times are
before the marker's are remembered. Any later change of such a file gets a later time, whatever the
clock's granularity and whatever the skew between this machine and a file server.

The cache is a convenience: a missing, unreadable, corrupt or unwritable cache file means hashing
everything, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

VERSION = 1

Stamp = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


def cache_root(environ: Mapping[str, str]) -> Path:
    """Where the cache files live: $XDG_CACHE_HOME/drophost/digests, or ~/.cache/... (pure)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "drophost" / "digests"


def cache_file(root: Path, folder: Path) -> Path:
    """One cache file per folder, named by a hash of its absolute path (pure)."""
    key = hashlib.sha256(str(folder.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return root / f"{key}.json"


def stamp_of(stat: os.stat_result) -> Stamp:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def load(path: Path) -> dict[str, tuple[Stamp, str]]:
    """The remembered entries, or none when the file is missing or not what this version wrote."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("files"), dict):
        return {}
    found: dict[str, tuple[Stamp, str]] = {}
    for rel, entry in data["files"].items():
        # Unrolled: this runs for every file of the folder on every deploy.
        if isinstance(entry, list) and len(entry) == 5:
            size, mtime, ctime, inode, digest = entry
            if (
                isinstance(size, int)
                and isinstance(mtime, int)
                and isinstance(ctime, int)
                and isinstance(inode, int)
                and isinstance(digest, str)
            ):
                found[rel] = ((size, mtime, ctime, inode), digest)
    return found


def start(path: Path) -> int | None:
    """Write the marker (the cache's own temporary file) and return its modification time, as the
    file system's clock says it; None when the cache cannot be written."""
    temp = _temp_of(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(temp, "w") as marker:
            return os.fstat(marker.fileno()).st_mtime_ns
    except OSError:
        return None


def save(path: Path, entries: dict[str, tuple[Stamp, str]], *, started_ns: int) -> None:
    """Write the entries changed before the marker, atomically; give up quietly if it cannot."""
    files = {
        rel: [*stamp, digest]
        for rel, (stamp, digest) in entries.items()
        if 0 <= stamp[1] < started_ns and 0 <= stamp[2] < started_ns
    }
    temp = _temp_of(path)
    try:
        temp.write_text(json.dumps({"version": VERSION, "files": files}, separators=(",", ":")))
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _temp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}")


def hash_with_cache(files: dict[str, Path], cache: Path | None, digest_of: Callable[[Path], str]) -> dict[str, str]:
    """Relative path -> sha256 hex, reusing remembered digests of files that did not change."""
    return hash_folder(files, cache, digest_of)[0]


def hash_folder(
    files: dict[str, Path], cache: Path | None, digest_of: Callable[[Path], str]
) -> tuple[dict[str, str], set[str]]:
    """(relative path -> sha256 hex, the paths whose content is new or changed since the cache remembered them)."""
    return hash_scanned({rel: (str(path), path.stat()) for rel, path in files.items()}, cache, digest_of)


def hash_scanned(
    files: Mapping[str, tuple[str, os.stat_result]], cache: Path | None, digest_of: Callable[[Path], str]
) -> tuple[dict[str, str], set[str]]:
    """hash_folder for files already stat'ed (relative path -> (path, stat), as client.digest.scan_stats
    gives them): only the files whose stamp changed are opened.

    One file after another: hashing the files of a site on several threads was slower here (most
    files are small, so the threads mostly take turns holding the GIL)."""
    known = load(cache) if cache is not None else {}
    started = start(cache) if cache is not None else None
    entries: dict[str, tuple[Stamp, str]] = {}
    digests: dict[str, str] = {}
    fresh: set[str] = set()
    for rel, (path, info) in files.items():
        stamp = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        remembered = known.get(rel)
        if remembered is not None and remembered[0] == stamp:
            digest = remembered[1]
        else:
            digest = digest_of(Path(path))
            # Hashed again but the same content (touched, or written in the tick the cache was
            # saved in): the server has it if it had it before.
            if remembered is None or remembered[1] != digest:
                fresh.add(rel)
            # Stat again: a file written while it was read must not be remembered with its old stamp.
            if stamp_of(os.stat(path)) != stamp:
                stamp = (-1, -1, -1, -1)
        entries[rel] = (stamp, digest)
        digests[rel] = digest
    if cache is not None and started is not None:
        save(cache, entries, started_ns=started)
    return digests, fresh

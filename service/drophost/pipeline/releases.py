"""Release directories on disk: releases/{slot}/{deployment id}/, filled once, never changed.

A release is sealed before it can go live: every entry must be a plain folder or a plain file (no
symbolic link, device, or dotfile but the folder .well-known/ at its top), then its folders and
files are made read-only. This one check per release is what keeps links off the sites origin.
nginx would otherwise follow them unless it checked every folder of every request
(`disable_symlinks`), at about a sixth of its throughput; DROPHOST_NGINX_SYMLINK_CHECK turns that
on as well.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path

from drophost.errors import UnsafeReleaseError

INCOMING = ".incoming"
# The suffix of a release set aside for removal after the deploy that pruned it answered.
REMOVING = ".removing"
SEALED_FOLDER = 0o555
SEALED_FILE = 0o444
# The one dot-folder a site may publish, at its top only (as on Netlify and Cloudflare Pages):
# security.txt, assetlinks.json, apple-app-site-association.
WELL_KNOWN = ".well-known"


def is_published_path(parts: Sequence[str]) -> bool:
    """Whether a path of a site (its components) may be published: no dotfile or dot-folder
    (.git/, .env, .DS_Store), except the folder .well-known/ at the top and no dotfile inside it (pure)."""
    rest = parts[1:] if len(parts) > 1 and parts[0] == WELL_KNOWN else parts
    return not any(part.startswith(".") for part in rest)


def incoming_dir(releases_root: Path) -> Path:
    """A fresh, unique directory to extract into before the deployment exists."""
    parent = releases_root / INCOMING
    parent.mkdir(parents=True, exist_ok=True)
    return parent / uuid.uuid4().hex


def release_dir(releases_root: Path, slot: str, deployment_id: int) -> Path:
    return releases_root / slot / str(int(deployment_id))


def locate(releases_root: Path, stored: str | Path) -> Path:
    """A stored release path, found under this data directory (it may have been moved since)."""
    parts = Path(stored).parts
    return releases_root / parts[-2] / parts[-1]


def promote(incoming: Path, final: Path) -> None:
    """Move an extracted tree to its final place (same filesystem: one rename)."""
    final.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(final.parent, 0o755)
    os.rename(incoming, final)


def remove(path: Path) -> None:
    """Delete a release, sealed or not (a sealed folder must be writable again to be emptied)."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    for folder, _, _ in os.walk(path):
        try:
            _chmod_no_follow(folder, 0o755)
        except OSError:
            pass  # rmtree reports nothing either: whatever stays is found again as an orphan
    shutil.rmtree(path, ignore_errors=True)


def set_aside(path: Path) -> Path:
    """Rename a release that is to go to a name no address serves (same folder: one rename), so
    that removing its files can wait; the new path. What a crash leaves there is found again by
    leftovers() (and by orphaned() at start)."""
    aside = path.with_name(path.name + REMOVING)
    os.rename(path, aside)
    return aside


def leftovers(releases_root: Path, slot: str, kept: set[str]) -> list[Path]:
    """The slot's release directories no stored, rollback-able config points at: pruned ones, set
    aside ones whose removal a crash stopped (plan, no effect). Only meaningful under the slot's
    lock, where no deploy of the slot has a release that is not recorded yet."""
    folder = releases_root / slot
    if slot in ("", ".", "..", INCOMING) or not folder.is_dir() or folder.is_symlink():
        return []
    kept_here = {locate(releases_root, path) for path in kept}
    return sorted(candidate for candidate in folder.iterdir() if candidate not in kept_here)


def is_sealed(path: Path) -> bool:
    """Whether seal() finished on this release (its top folder is made read-only last)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == SEALED_FOLDER


def seal(path: Path) -> None:
    """Check that a release holds only plain folders and files, then make it read-only.

    Raises UnsafeReleaseError, having changed nothing it found unsafe, if anything else is in it.
    DropHost's own writers never make links or dotfiles; this is the one check that all of them
    pass through, so a writer's mistake cannot put one on the sites origin. Idempotent.
    """
    folders = _check_tree(path)
    # Deepest first and the top folder last, so is_sealed() means the whole tree is done.
    for folder in reversed(folders):
        _chmod_no_follow(folder, SEALED_FOLDER)


def seal_if_needed(path: Path) -> None:
    """seal() a release not sealed yet (one stat when it is): releases older than sealing, at start
    or when rolled back to."""
    if not is_sealed(path):
        seal(path)


def _check_tree(root: Path) -> list[str]:
    """Every folder of a release, top first; files made read-only on the way (their blobs are shared)."""
    top = root.lstat()
    if not stat.S_ISDIR(top.st_mode):
        raise UnsafeReleaseError("the release is not a folder")
    folders = [str(root)]
    index = 0
    while index < len(folders):
        folder = folders[index]
        index += 1
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") and not (entry.name == WELL_KNOWN and index == 1 and entry.is_dir()):
                    raise UnsafeReleaseError("the site contains a dotfile, which DropHost never publishes")
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    raise UnsafeReleaseError(
                        "the site contains a symbolic link or a special file; only plain files are published"
                    )
                if info.st_mode & 0o222:
                    _chmod_no_follow(entry.path, SEALED_FILE)
    return folders


def _chmod_no_follow(path: str | Path, mode: int) -> None:
    # Linux has no lchmod: open without following (a link swapped in meanwhile fails), then fchmod.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def orphaned(releases_root: Path, kept: set[str]) -> list[Path]:
    """Every release directory that no stored, rollback-able config points at (plan, no effect).

    Matched by <slot>/<deployment id> as well as by full path: a data directory that was moved
    (its stored paths now name the old place) must never lose its releases at start.
    """
    if not releases_root.is_dir():
        return []
    kept_here = {locate(releases_root, path) for path in kept}
    found: list[Path] = []
    incoming = releases_root / INCOMING
    if incoming.is_dir():
        found.extend(sorted(incoming.iterdir()))
    for slot_dir in sorted(releases_root.iterdir()):
        if slot_dir.name == INCOMING or not slot_dir.is_dir() or slot_dir.is_symlink():
            continue
        for candidate in sorted(slot_dir.iterdir()):
            if candidate not in kept_here:
                found.append(candidate)
    return found

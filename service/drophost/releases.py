"""Release directories on disk: releases/{slot}/{deployment id}/, filled once, never changed."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

INCOMING = ".incoming"


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
    shutil.rmtree(path, ignore_errors=True)


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

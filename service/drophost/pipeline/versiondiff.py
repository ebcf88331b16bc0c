"""What changed between two config versions of a slot: the nginx text and the published files."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drophost.digests import file_digest

MAX_FILES = 20_000
MAX_TEXT_BYTES = 256 * 1024
MAX_TEXT_DIFFS = 20


@dataclass
class TreeDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    text_diffs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "text_diffs": self.text_diffs,
        }


def unified(old: str, new: str, old_name: str, new_name: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=old_name, tofile=new_name
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def list_files(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, sha256) of the regular files of a release (nothing if it is gone)."""
    found: dict[str, tuple[int, str]] = {}
    if not root.is_dir():
        return found
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if path.is_symlink() or not path.is_file():
                continue
            if len(found) >= MAX_FILES:
                return found
            found[path.relative_to(root).as_posix()] = (path.stat().st_size, file_digest(path))
    return found


def diff_trees(old_root: Path, new_root: Path) -> TreeDiff:
    old, new = list_files(old_root), list_files(new_root)
    result = TreeDiff(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(name for name in set(old) & set(new) if old[name] != new[name]),
    )
    result.unchanged = len(set(old) & set(new)) - len(result.changed)
    for name in result.changed[:MAX_TEXT_DIFFS]:
        before, after = _text(old_root / name), _text(new_root / name)
        if before is not None and after is not None:
            result.text_diffs[name] = unified(before, after, f"a/{name}", f"b/{name}")
    return result


def _text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            return None
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None

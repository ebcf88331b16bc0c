"""The tree of one commit, written like a ZIP: listed within the caps, then hard-linked from a blob cache.

The commit comes from a mirror or a hosted repository (mirror.py); git is called through its runner.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from drophost.errors import CommandError, DrophostError, GitError
from drophost.gitops.mirror import SHA, GitSource
from drophost.gitops.repourls import check_repo_path
from drophost.pipeline.archive import ArchiveLimits, check_entry_name
from drophost.pipeline.releases import is_published_path
from drophost.text import show

_BATCH_BYTES = 32 * 1024 * 1024
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    oid: str
    size: int
    path: str


@dataclass(frozen=True)
class TreeListing:
    files: tuple[TreeEntry, ...]
    total_bytes: int


class Trees:
    def __init__(self, source: GitSource) -> None:
        self.source = source
        self.blobs = source.root / "blobs"
        self._blob_lock = threading.Lock()

    def list_tree(self, git_dir: Path, commit: str, path: str, limits: ArchiveLimits) -> TreeListing:
        """Which blobs to publish: regular files only, no dotfiles, within the caps."""
        path = check_repo_path(path)
        if not SHA.fullmatch(commit):
            raise GitError("the commit to deploy is not a full commit id")
        tree = f"{commit}:{path}" if path else commit
        try:
            raw = self.source.git(git_dir, "ls-tree", "-r", "-z", "-l", "--full-tree", "--end-of-options", tree)
        except CommandError:
            if not path:
                raise
            self._explain_path(git_dir, commit, path)
            raise
        return parse_listing(raw, limits)

    def _explain_path(self, git_dir: Path, commit: str, path: str) -> None:
        """Why `commit:path` could not be listed, as a sentence for users (only after a failure)."""
        try:
            oid = self.source.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}:{path}")
            kind = self.source.git(git_dir, "cat-file", "-t", oid.decode().strip())
        except CommandError:
            raise GitError(f'path "{path}" does not exist in the commit', field="path") from None
        if kind.strip() != b"tree":
            raise GitError(f'path "{path}" is not a folder in the commit', field="path")

    def write_tree(self, git_dir: Path, listing: TreeListing, destination: Path) -> int:
        """Fill a fresh destination with the listed files: hard links into the blob store.

        Each blob is written once to <data>/git/blobs/<oid> (so a push changing one file writes one
        file); release files are hard links to it, never symbolic links. Releases are never modified.
        A cached blob is found by linking it (no stat first); only the blobs whose link failed are
        read from git. Returns how many files had to be copied instead (another filesystem).
        """
        destination.mkdir(mode=0o755, parents=False, exist_ok=False)
        self.blobs.mkdir(parents=True, exist_ok=True)
        writer = _TreeWriter(self.blobs, destination)
        with self._blob_lock:
            missing = [entry for entry in listing.files if not writer.link(entry)]
            unique = {entry.oid: entry for entry in missing}
            for batch in _batches(tuple(unique.values())):
                self._store_blobs(git_dir, batch)
            for entry in missing:
                if not writer.link(entry):
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")
        return writer.copied

    def _store_blobs(self, git_dir: Path, batch: list[TreeEntry]) -> None:
        out = self.source.git(git_dir, "cat-file", "--batch", input_bytes="".join(f"{e.oid}\n" for e in batch).encode())
        offset = 0
        blobs = f"{self.blobs}/"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for entry in batch:
            end = out.index(b"\n", offset)
            header = out[offset:end].split(b" ")
            if len(header) != 3 or header[1] != b"blob" or int(header[2]) != entry.size:
                raise GitError(f"the file {show(entry.path)} could not be read from the repository")
            data = memoryview(out)[end + 1 : end + 1 + entry.size]
            offset = end + 1 + entry.size + 1
            partial = f"{blobs}{entry.oid}.partial"
            # Read-only from the start: the blob is hard-linked into sealed releases. (A partial a
            # crash left is read-only too, and O_TRUNC could not reopen it: remove it first.)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            fd = os.open(partial, flags, 0o444)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
            os.replace(partial, blobs + entry.oid)

    def prune_blobs(self) -> int:
        """Remove stored blobs no release links to any more (link count 1)."""
        if not self.blobs.is_dir():
            return 0
        removed = 0
        with self._blob_lock:
            for blob in self.blobs.iterdir():
                if blob.name.endswith(".partial") or blob.lstat().st_nlink <= 1:
                    blob.unlink(missing_ok=True)
                    removed += 1
        return removed


def parse_listing(listing: bytes, limits: ArchiveLimits) -> TreeListing:
    """Parse `git ls-tree -r -z -l` output and apply the ZIP rules (pure)."""
    files: list[TreeEntry] = []
    total = 0
    records = [r for r in listing.split(b"\0") if r]
    if len(records) > limits.max_entries:
        raise GitError(f"the tree has more than {limits.max_entries} entries", limit="max_entries")
    for record in records:
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        if not SHA.fullmatch(oid):
            raise GitError("the tree listing could not be read")
        try:
            name = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            raise GitError("the tree has a file name that is not UTF-8") from None
        if mode in (MODE_SYMLINK, MODE_SUBMODULE) or kind != "blob":
            # links and submodules are never published
            continue
        try:
            parts = check_entry_name(name, limits)
        except DrophostError as exc:
            raise GitError(exc.message.replace("the entry", "the file").replace("the archive", "the tree")) from None
        if not is_published_path(parts):
            # dotfiles (.git*, .env) are never published; .well-known/ at the top is
            continue
        total += int(size)
        if total > limits.max_unpacked_bytes:
            raise GitError(f"the tree holds more than {limits.max_unpacked_bytes} bytes", limit="max_unpacked_bytes")
        files.append(TreeEntry(mode=mode, oid=oid, size=int(size), path=name))
    if not files:
        raise GitError("the tree contains no files to publish")
    return TreeListing(files=tuple(files), total_bytes=total)


def _batches(entries: tuple[TreeEntry, ...]) -> list[list[TreeEntry]]:
    batches: list[list[TreeEntry]] = [[]]
    size = 0
    for entry in entries:
        if batches[-1] and size + entry.size > _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += entry.size
    return batches


class _TreeWriter:
    """Hard links from the blob cache into a fresh release tree, folders made once each.

    Paths are plain strings joined to the destination this writer made itself, so no component can
    be a symbolic link; names were checked by parse_listing (no "", ".", ".." components).
    """

    def __init__(self, blobs: Path, destination: Path) -> None:
        self.blobs = f"{blobs}/"
        self.root = f"{destination}/"
        self.folders: set[str] = {""}
        self.copied = 0

    def link(self, entry: TreeEntry) -> bool:
        """Link one listed file; False if its blob is not cached yet."""
        folder = entry.path.rpartition("/")[0]
        if folder not in self.folders:
            self._make_folder(folder)
        blob = self.blobs + entry.oid
        target = self.root + entry.path
        try:
            os.link(blob, target, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy(blob, target)
            self.copied += 1
        return True

    def _make_folder(self, folder: str) -> None:
        parent = folder.rpartition("/")[0]
        if parent not in self.folders:
            self._make_folder(parent)
        os.mkdir(self.root + folder, 0o755)
        self.folders.add(folder)


def _copy(blob: str, target: str) -> None:
    # releases/ on another filesystem than git/: copy, still refusing to follow or replace anything
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with open(blob, "rb") as source, os.fdopen(os.open(target, flags, 0o444), "wb") as out:
        shutil.copyfileobj(source, out)

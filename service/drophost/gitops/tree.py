"""The tree of one commit, written like a ZIP: listed within the caps, then hard-linked from a blob cache.

The commit comes from a mirror or a hosted repository (mirror.py); git is called through its runner.
git's output is read as it comes and never held whole: a listing stops (and git is killed) at the
first entry past a cap, so a "git bomb" (a few kB whose trees name each other 10^10 times) costs
max_entries records, not the 10^10; blobs are copied to disk in chunks.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from drophost.errors import CommandError, DrophostError, GitError
from drophost.gitops.mirror import SHA, GitSource
from drophost.gitops.repourls import check_repo_path
from drophost.pipeline.archive import ArchiveLimits, check_entry_name
from drophost.pipeline.releases import is_published_path
from drophost.text import show

_BATCH_BYTES = 32 * 1024 * 1024
_CHUNK = 1024 * 1024
_LIST_CHUNK = 64 * 1024
# A listing record is "<mode> <type> <oid> <size>\t<path>\0": the path plus at most this much.
_RECORD_OVERHEAD = 160
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
        reader = ListingReader(limits)
        try:
            # -t: folders are listed too, so a tree of nothing but folders is counted as it is walked
            with self.source.git_stream(
                git_dir, "ls-tree", "-r", "-t", "-z", "-l", "--full-tree", "--end-of-options", tree
            ) as out:
                while chunk := out.read(_LIST_CHUNK):
                    reader.feed(chunk)
        except CommandError:
            if not path:
                raise
            self._explain_path(git_dir, commit, path)
            raise
        return reader.finish()

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

        Each blob is written once, at its place in the destination, and that file is then linked
        in as <data>/git/blobs/<oid> (so a push changing one file writes one file, and a first
        deploy creates one file per blob, as a checkout does). Other paths with the same blob,
        and later releases, are hard links to it, never symbolic links. Releases are never
        modified. A cached blob is found by linking it (no stat first); only the blobs whose link
        failed are read from git. Returns how many files are not linked into the cache (another
        filesystem).
        """
        destination.mkdir(mode=0o755, parents=False, exist_ok=False)
        self.blobs.mkdir(parents=True, exist_ok=True)
        writer = _TreeWriter(self.blobs, destination)
        with self._blob_lock:
            missing = [entry for entry in listing.files if not writer.link(entry)]
            unique = {entry.oid: entry for entry in missing}
            for batch in _batches(tuple(unique.values())):
                self._store_blobs(git_dir, batch, writer)
            for entry in missing:
                if unique[entry.oid] is not entry and not writer.link(entry):
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")
        return writer.copied

    def _store_blobs(self, git_dir: Path, batch: list[TreeEntry], writer: _TreeWriter) -> None:
        oids = "".join(f"{e.oid}\n" for e in batch).encode()
        with self.source.git_stream(git_dir, "cat-file", "--batch", input_bytes=oids) as out:
            for entry in batch:
                header = out.readline(_RECORD_OVERHEAD).rstrip(b"\n").split(b" ")
                if len(header) != 3 or header[1] != b"blob" or header[2] != str(entry.size).encode():
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")
                self._store_blob(out, entry, writer)
                if out.read(1) != b"\n":
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")

    def _store_blob(self, out: IO[bytes], entry: TreeEntry, writer: _TreeWriter) -> None:
        """Copy one blob from cat-file's output to its path in the release, a chunk at a time, then
        link that file into the cache as <blobs>/<oid>."""
        target = writer.root + entry.path
        # Read-only from the start: the file is the cached blob, hard-linked into sealed releases.
        # O_EXCL in a folder this writer made: nothing can be there, least of all a link.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(target, flags, 0o444)
        try:
            left = entry.size
            while left:
                data = memoryview(out.read(min(left, _CHUNK)))
                if not data:
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")
                left -= len(data)
                while data:
                    data = data[os.write(fd, data) :]
        except BaseException:
            os.unlink(target)
            raise
        finally:
            os.close(fd)
        try:
            os.link(target, writer.blobs + entry.oid, follow_symlinks=False)
        except FileExistsError:
            pass  # cached meanwhile: this release keeps its own copy
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            writer.copied += 1  # blobs/ on another filesystem: no cache, the release holds the file

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
    """Parse `git ls-tree -r -z -l` output (with or without -t) and apply the ZIP rules (pure)."""
    reader = ListingReader(limits)
    reader.feed(listing)
    return reader.finish()


class ListingReader:
    """`git ls-tree -r -t -z -l` output, fed as it arrives, checked against the ZIP rules (pure).

    Raises at the first record past a cap, so the caller stops reading (and git is killed) there:
    what is kept is at most max_entries entries and one partial record.
    """

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.files: list[TreeEntry] = []
        self.total = 0
        self.entries = 0  # every record but folders: files, links, submodules, dotfiles
        self.folders = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        records = (self._pending + chunk).split(b"\0")
        self._pending = records.pop()
        if len(self._pending) > self.limits.max_path_length + _RECORD_OVERHEAD:
            raise GitError(f"the tree has a file name longer than {self.limits.max_path_length} bytes")
        for record in records:
            if record:
                self._add(record)

    def finish(self) -> TreeListing:
        if self._pending:
            self._add(self._pending)
            self._pending = b""
        if not self.files:
            raise GitError("the tree contains no files to publish")
        return TreeListing(files=tuple(self.files), total_bytes=self.total)

    def _add(self, record: bytes) -> None:
        limits = self.limits
        meta, _, raw_path = record.partition(b"\t")
        try:
            mode, kind, oid, size = meta.decode("ascii").split()
        except (UnicodeDecodeError, ValueError):
            raise GitError("the tree listing could not be read") from None
        if not SHA.fullmatch(oid):
            raise GitError("the tree listing could not be read")
        if kind == "tree":
            # Folders are counted on their own (a ZIP lists its folders too): a tree of nothing but
            # folders, nested exponentially, stops here instead of at the git timeout.
            self.folders += 1
            if self.folders > limits.max_entries:
                raise GitError(f"the tree has more than {limits.max_entries} entries", limit="max_entries")
            return
        self.entries += 1
        if self.entries > limits.max_entries:
            raise GitError(f"the tree has more than {limits.max_entries} entries", limit="max_entries")
        try:
            name = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            raise GitError("the tree has a file name that is not UTF-8") from None
        if mode in (MODE_SYMLINK, MODE_SUBMODULE) or kind != "blob":
            # links and submodules are never published
            return
        try:
            parts = check_entry_name(name, limits)
        except DrophostError as exc:
            raise GitError(exc.message.replace("the entry", "the file").replace("the archive", "the tree")) from None
        if not is_published_path(parts):
            # dotfiles (.git*, .env) are never published; .well-known/ at the top is
            return
        if not size.isdigit():
            raise GitError("the tree listing could not be read")
        self.total += int(size)
        if self.total > limits.max_unpacked_bytes:
            raise GitError(f"the tree holds more than {limits.max_unpacked_bytes} bytes", limit="max_unpacked_bytes")
        self.files.append(TreeEntry(mode=mode, oid=oid, size=int(size), path=name))


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

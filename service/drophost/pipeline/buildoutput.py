"""A build's output becomes a tree to publish by the rules of a ZIP: names, sizes, counts, no links.

The output was written by the build (untrusted; its processes are all gone by now): it is walked
without following anything, every name goes through the archive's checks, dotfiles are left out as
from a ZIP, and regular files are copied (never linked) into a fresh folder under releases/.incoming.
With `move` (a sandboxed build, whose pid namespace took every process it started along) a file
with no other name is moved instead, made the service's own and 0644 first: nothing can write to it
any more, and on a busy disk creating a thousand files again costs seconds. Across file systems
(Compose's builds volume) and for a file with other names (links to a cache, say) it is copied.
adopt_output goes further for such a build: the output folder itself is renamed into place (one
rename instead of one per file) and then checked there by the same rules, what is not published
removed, every file and folder made the service's own.
Given the artifact store, each file goes into it as it is published (made read-only, hashed from
the descriptor already open, linked in): the output is walked and read once, not again by
ArtifactStore.absorb_tree.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from drophost.errors import BuildError, DrophostError
from drophost.pipeline.archive import ArchiveLimits, check_entry_name
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.releases import is_published_path
from drophost.text import show

_CHUNK = 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Copied:
    files: int
    size: int


def check_output_folder(output: Path) -> None:
    """The build wrote `output` as a folder of its own (not a link, not a file), or BuildError."""
    try:
        info = os.lstat(output)
    except FileNotFoundError:
        raise BuildError("the build did not write its output folder") from None
    if not stat.S_ISDIR(info.st_mode):
        raise BuildError("the build's output is not a folder (a link or a file)")


def copy_output(
    output: Path, destination: Path, limits: ArchiveLimits, *, move: bool = False, store: ArtifactStore | None = None
) -> Copied:
    """Copy (or move) the publishable files of `output` into the fresh folder `destination` (and
    into the store, if given), or raise BuildError."""
    check_output_folder(output)
    destination.mkdir(mode=0o755, exist_ok=False)
    counter = _Counter(limits, move, store)
    _copy_folder(output, destination, "", counter)
    if counter.files == 0:
        raise BuildError("the build's output folder holds no files to publish")
    return Copied(files=counter.files, size=counter.size)


def adopt_output(output: Path, destination: Path, limits: ArchiveLimits, store: ArtifactStore | None = None) -> Copied:
    """The output folder of a build whose processes are all gone becomes the fresh folder
    `destination` (renamed), checked like copy_output's copy; copied instead across file systems."""
    check_output_folder(output)
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, "the release folder exists already", str(destination))
    try:
        os.rename(output, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        return copy_output(output, destination, limits, move=True, store=store)
    counter = _Counter(limits, True, store)
    counter.own_folder(str(destination))
    _adopt_folder(str(destination), "", counter)
    if counter.files == 0:
        raise BuildError("the build's output folder holds no files to publish")
    return Copied(files=counter.files, size=counter.size)


def _adopt_folder(folder: str, prefix: str, counter: _Counter) -> None:
    # Paths stay text and the checks run once per name: at a thousand files or more, a Path per
    # entry, a second check of the folders above and hashlib's reader cost more than the syscalls.
    with os.scandir(folder) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        name = f"{prefix}{entry.name}"
        parts = counter.count(name)
        if entry.is_symlink():
            raise BuildError(f"the build's output has a link: {show(name)}")
        path = entry.path
        # The folders above were published (a folder that is not is removed, never entered): only
        # a name of its own starting with a dot can make this one unpublished.
        if entry.name.startswith(".") and not is_published_path(parts):
            _discard_entry(Path(path))  # dotfiles are never published, as from a ZIP
        elif entry.is_dir(follow_symlinks=False):
            counter.own_folder(path)
            _adopt_folder(path, f"{name}/", counter)
        elif entry.is_file(follow_symlinks=False):
            _adopt_file(path, name, counter)
        else:
            raise BuildError(f"the build's output has a special file: {show(name)}")


def _adopt_file(path: str, name: str, counter: _Counter) -> None:
    fd = os.open(path, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BuildError(f"the build's output has a special file: {show(name)}")
        counter.add(info.st_size)
        if info.st_nlink == 1:
            if counter.root:
                os.fchown(fd, counter.uid, counter.gid)
            os.fchmod(fd, counter.mode)
            counter.store_file(path, _fd_digest(fd, info.st_size))
            return
        # Another name of this file stays with the build (a cache's, say): the release gets a copy.
        temp = Path(path).with_name(f".adopt-{uuid.uuid4().hex}")
        digest = _copy_fd(fd, info.st_size, temp, counter.mode)
        os.replace(temp, path)
        counter.store_file(path, digest)
    finally:
        os.close(fd)


def _discard_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for folder, _, _ in os.walk(path):
            os.chmod(folder, 0o755)
        shutil.rmtree(path)
    else:
        path.unlink()


class _Counter:
    def __init__(self, limits: ArchiveLimits, move: bool, store: ArtifactStore | None = None) -> None:
        self.limits = limits
        self.move = move
        self.store = store
        # The store's blobs are read-only: a file linked to one is too.
        self.mode = 0o644 if store is None else 0o444
        self.entries = 0
        self.files = 0
        self.size = 0
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.root = self.uid == 0

    def own_folder(self, folder: str) -> None:
        """A folder of the output becomes the service's own, 0755."""
        if self.root:
            os.lchown(folder, self.uid, self.gid)
        os.chmod(folder, 0o755)

    def store_file(self, path: Path | str, digest: str) -> None:
        if self.store is not None:
            self.store.adopt_file(str(path), digest)

    def count(self, name: str) -> list[str]:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise BuildError(f"the build's output has more than {self.limits.max_entries} entries")
        try:
            return check_entry_name(name, self.limits)
        except DrophostError as exc:
            raise BuildError(exc.message.replace("the entry name", "the output file")) from None

    def add(self, size: int) -> None:
        self.files += 1
        self.size += size
        if self.size > self.limits.max_unpacked_bytes:
            raise BuildError(f"the build's output holds more than {self.limits.max_unpacked_bytes} bytes")


def _copy_folder(source: Path, target: Path, prefix: str, counter: _Counter) -> None:
    with os.scandir(source) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = f"{prefix}{entry.name}"
            parts = counter.count(name)
            if entry.is_symlink():
                raise BuildError(f"the build's output has a link: {show(name)}")
            if not is_published_path(parts):
                continue  # dotfiles are never published, as from a ZIP
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(target / entry.name, 0o755)
                _copy_folder(Path(entry.path), target / entry.name, f"{name}/", counter)
            elif entry.is_file(follow_symlinks=False):
                _copy_file(Path(entry.path), target / entry.name, name, counter)
            else:
                raise BuildError(f"the build's output has a special file: {show(name)}")


def _copy_file(source: Path, target: Path, name: str, counter: _Counter) -> None:
    fd = os.open(source, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BuildError(f"the build's output has a special file: {show(name)}")
        counter.add(info.st_size)
        if counter.move and info.st_nlink == 1 and _moved(fd, source, target, counter.mode):
            counter.store_file(target, _fd_digest(fd, info.st_size))
            return
        counter.store_file(target, _copy_fd(fd, info.st_size, target, counter.mode))
    finally:
        os.close(fd)


def _copy_fd(fd: int, size: int, target: Path, mode: int) -> str:
    """Copy at most `size` bytes of an open file into the new file `target`; the copy's sha256."""
    digest = hashlib.sha256()
    with open(fd, "rb", closefd=False) as reader, os.fdopen(os.open(target, _WRITE_FLAGS, mode), "wb") as out:
        left = size
        while left > 0 and (chunk := reader.read(min(_CHUNK, left))):
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _fd_digest(fd: int, size: int) -> str:
    """The sha256 of an open file of `size` bytes (as fstat saw it), read from its start."""
    if size < _CHUNK:
        # One pread of the whole file (one more byte: it grew?), no file object around the descriptor.
        data = os.pread(fd, size + 1, 0)
        if len(data) <= size:
            return hashlib.sha256(data).hexdigest()
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as reader:
        return hashlib.file_digest(reader, "sha256").hexdigest()


def _moved(fd: int, source: Path, target: Path, mode: int) -> bool:
    """Move one of the build's files into the release; False where it has to be copied instead."""
    try:
        if os.geteuid() == 0:
            os.fchown(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, mode)
        os.rename(source, target)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EACCES, errno.EPERM):
            return False
        raise
    return True


def same_files(first: Path, second: Path) -> bool:
    """Whether two trees hold the same files with the same contents (links and special files are
    never in a release). Two names of one inode (both linked to one blob of the artifact store) are
    the same without being read; only the others are hashed."""
    mine, theirs = _inodes(first), _inodes(second)
    if mine.keys() != theirs.keys():
        return False
    return all(inode == theirs[name] or _digest(first / name) == _digest(second / name) for name, inode in mine.items())


def _inodes(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_dev, info.st_ino)
    return found


def _digest(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()

"""The content-addressed file store: each distinct file once, by sha256; releases hard-link into it."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from drophost.digests import file_digest, is_digest
from drophost.errors import ValidationError

_CHUNK = 1024 * 1024
# Files above this size get a crc32+size hint when stored: a ZIP deploy streams them and, with the
# hint, hashes a known one without writing it again. Smaller files are hashed in memory first.
HINTED_SIZE = 1024 * 1024


def encode_hint(digest: str) -> str:
    """A crc hint's symlink target: the digest in 43 base64url characters, so that the link fits
    in its inode (ext4 keeps targets under 60 bytes there; 64 hex characters took a 4 KiB block)."""
    return base64.urlsafe_b64encode(bytes.fromhex(digest)).decode().rstrip("=")


def decode_hint(target: str) -> str | None:
    """The digest a hint names (also the 64-hex form older stores wrote), or None."""
    if is_digest(target):
        return target
    if len(target) != 43 or not target.replace("-", "").replace("_", "").isalnum() or not target.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(target + "=").hex()
    except ValueError:
        return None


class ArtifactStore:
    """blobs/<2 hex>/<62 hex> (read-only files) plus a crc32+size index used to skip rewriting."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.crc_index = root / "crc"
        self._guard = threading.Condition()
        self._users = 0

    def prepare(self) -> None:
        for folder in (self.blobs, self.tmp, self.crc_index):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
        self._make_blob_folders()

    def _make_blob_folders(self) -> None:
        """All 256 blobs/<2 hex> folders, made once: on a busy disk an empty store's first deploy
        spent ~110 ms making them one by one between its links. "ff" is made last, so a store that
        has it has them all (one stat per later call); a folder missing anyway (removed by hand) is
        still made when its first blob comes (adopt_file)."""
        base = str(self.blobs)
        if os.path.isdir(f"{base}/ff"):
            return
        for number in range(256):
            try:
                os.mkdir(f"{base}/{number:02x}", 0o755)
            except FileExistsError:
                pass

    def path(self, digest: str) -> Path:
        return Path(self.blob_file(digest))

    def blob_file(self, digest: str) -> str:
        """The blob's path as text: a deploy looks up every file of a site, and a Path per lookup
        cost more than the stat itself (1,000 lookups: 12 against 5 ms)."""
        if not is_digest(digest):
            raise ValidationError(f"{digest[:80]!r} is not a sha256 hex digest", field="digest")
        return f"{self.blobs}/{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.blob_file(digest))

    def missing(self, digests: Iterable[str]) -> list[str]:
        return sorted({d for d in digests if not self.has(d)})

    def add_stream(self, chunks: Iterable[bytes], *, expected: str | None = None, limit: int | None = None) -> str:
        """Store a stream; verify it against `expected`; return its digest."""
        writer = self.writer(limit=limit)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish(expected)
        finally:
            writer.close()

    def writer(self, *, limit: int | None = None) -> ArtifactWriter:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return ArtifactWriter(self, self.tmp / uuid.uuid4().hex, limit)

    def _adopt(self, temp: Path, digest: str) -> None:
        target = self.path(digest)
        if target.exists():
            return
        target.parent.mkdir(mode=0o755, exist_ok=True)
        os.chmod(temp, 0o444)
        try:
            # link, not rename: a concurrent writer of the same content must not be overwritten.
            os.link(temp, target)
        except FileExistsError:
            pass

    def adopt_file(self, path: str, digest: str) -> bool:
        """Make a file just written elsewhere on this filesystem (read-only, content `digest`) the
        blob of that digest, by linking it in; when the store has that blob already, the file is
        replaced by a link to it. True when the file became the blob."""
        target = self.blob_file(digest)
        try:
            try:
                os.link(path, target)
            except FileNotFoundError:  # the first blob of its folder
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                os.link(path, target)
            return True
        except FileExistsError:
            # A short name beside it: the file's own name may already be as long as names get.
            temp = os.path.join(os.path.dirname(path), f".adopt-{uuid.uuid4().hex}")
            os.link(target, temp)
            os.replace(temp, path)
            return False

    def link_into(self, digest: str, destination: Path) -> None:
        os.link(self.path(digest), destination)

    def sizes(self, digests: Iterable[str]) -> tuple[dict[str, int], list[str]]:
        """(digest -> size of the stored ones, the sorted digests not stored): one stat each."""
        found: dict[str, int] = {}
        missing: list[str] = []
        for digest in set(digests):
            try:
                found[digest] = os.stat(self.blob_file(digest)).st_size
            except FileNotFoundError:
                missing.append(digest)
        return found, sorted(missing)

    def link_tree(self, file_list: dict[str, str], root: Path) -> None:
        """Make `root` a tree of hard links: relative path -> the blob of that digest.

        Each folder is made once, before its files; the paths are not checked again (the file
        list was, when the upload started).
        """
        folders = {os.path.dirname(path) for path in file_list}
        for folder in sorted(folders):
            if folder:
                os.makedirs(root / folder, mode=0o755, exist_ok=True)
        base = str(root)
        for path, digest in file_list.items():
            os.link(self.blob_file(digest), f"{base}/{path}")

    # -- crc32+size -> digest: a hint that lets ZIP deploys hash instead of write -------------------
    def remember_crc(self, crc: int, size: int, digest: str) -> None:
        hint = self.crc_index / f"{crc:08x}-{size}"
        try:
            os.symlink(encode_hint(digest), hint)
        except FileExistsError:
            pass

    def digest_hint(self, crc: int, size: int) -> str | None:
        return self.digest_hint_of(self.crc_index / f"{crc:08x}-{size}")

    def unreferenced(self, *, ignoring: set[Path] | None = None) -> list[Path]:
        """Blobs no release links to (their only link is the store's own).

        `ignoring`: release directories to count as already gone (for a dry run).
        """
        doomed_links = links_in(ignoring or set())
        found: list[Path] = []
        if not self.blobs.is_dir():
            return found
        for folder in self.blobs.iterdir():
            for blob in folder.iterdir():
                info = blob.stat()
                if info.st_nlink - doomed_links.get(info.st_ino, 0) <= 1:
                    found.append(blob)
        return found

    def forget_dangling_hints(self) -> None:
        for hint in self.crc_index.iterdir():
            if self.digest_hint_of(hint) is None:
                hint.unlink(missing_ok=True)

    def digest_hint_of(self, hint: Path) -> str | None:
        try:
            candidate = decode_hint(os.readlink(hint))
        except OSError:
            return None
        return candidate if candidate is not None and self.has(candidate) else None

    @contextmanager
    def using(self) -> Iterator[None]:
        """Held while a deploy links blobs: the sweeper never removes one under its feet."""
        with self._guard:
            self._users += 1
        try:
            yield
        finally:
            with self._guard:
                self._users -= 1
                self._guard.notify_all()

    @contextmanager
    def sweeping(self) -> Iterator[None]:
        with self._guard:
            while self._users:
                self._guard.wait()
            yield

    def absorb_tree(self, root: Path) -> int:
        """Turn every plain file under root into a link to its blob (adding new blobs); return bytes new."""
        added = 0
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                    continue
                os.chmod(path, 0o444)
                if self.adopt_file(path, file_digest(Path(path))):
                    added += info.st_size
        return added


class ArtifactWriter:
    """Streams one file into the store's tmp folder, hashing as it goes; finish() adopts it."""

    def __init__(self, store: ArtifactStore, temp: Path, limit: int | None) -> None:
        self.artifacts = store
        self.temp = temp
        self.limit = limit
        self.size = 0
        self._digest = hashlib.sha256()
        self._crc = 0
        self._out = open(temp, "xb")  # closed by close()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise ValidationError(f"the file is larger than {self.limit} bytes", field="size")
        self._digest.update(chunk)
        self._crc = zlib.crc32(chunk, self._crc)
        self._out.write(chunk)

    def finish(self, expected: str | None = None) -> str:
        self._out.close()
        found = self._digest.hexdigest()
        if expected is not None and found != expected:
            raise ValidationError("the uploaded bytes do not match their sha256", expected=expected)
        self.artifacts._adopt(self.temp, found)
        if self.size > HINTED_SIZE:
            self.artifacts.remember_crc(self._crc, self.size, found)
        return found

    def close(self) -> None:
        self._out.close()
        self.temp.unlink(missing_ok=True)


def links_in(roots: set[Path]) -> dict[int, int]:
    """inode -> how many hard links to it the given trees hold."""
    counts: dict[int, int] = {}
    for root in roots:
        for walked, _, names in os.walk(root):
            for name in names:
                inode = os.lstat(os.path.join(walked, name)).st_ino
                counts[inode] = counts.get(inode, 0) + 1
    return counts

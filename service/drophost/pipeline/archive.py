"""ZIP uploads: decide what may be extracted (pure checks), extract exactly that, and publish it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from drophost.digests import stream_digest
from drophost.errors import DrophostError, InvalidArchiveError
from drophost.names import validate_slot
from drophost.pipeline import releases
from drophost.pipeline.artifacts import HINTED_SIZE, ArtifactStore
from drophost.pipeline.context import Context
from drophost.pipeline.publish import publish_tree
from drophost.pipeline.releases import WELL_KNOWN, is_published_path
from drophost.pipeline.siterules import SiteOptions
from drophost.settings import Settings
from drophost.store import deployments
from drophost.text import show

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# Below this size any compression ratio is harmless; above it a high ratio means a bomb.
_RATIO_FREE_BYTES = 1024 * 1024
_IGNORED_TOP_LEVEL = {"__MACOSX"}
_CHUNK = 1024 * 1024
# Entries up to this size are inflated into memory (two at a time at most); larger ones are streamed.
SMALL_FILE = HINTED_SIZE


def _setting_default(name: str) -> int:
    """A limit's default is the documented default of the setting of the same name (settings.py)."""
    default = next(spec.default for spec in dataclasses.fields(Settings) if spec.name == name)
    assert isinstance(default, int)
    return default


@dataclass(frozen=True)
class ArchiveLimits:
    """What one tree may hold, whatever its source (ZIP, digest file list, git): the settings of these names."""

    max_entries: int = _setting_default("max_entries")
    max_unpacked_bytes: int = _setting_default("max_unpacked_bytes")
    max_compression_ratio: int = _setting_default("max_compression_ratio")
    max_path_length: int = _setting_default("max_path_length")
    max_name_length: int = _setting_default("max_name_length")
    max_path_depth: int = _setting_default("max_path_depth")

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(**{spec.name: getattr(settings, spec.name) for spec in dataclasses.fields(cls)})


@dataclass(frozen=True)
class PlannedFile:
    entry: zipfile.ZipInfo
    target: str
    size: int


@dataclass(frozen=True)
class ExtractionPlan:
    files: tuple[PlannedFile, ...]
    total_bytes: int
    stripped_prefix: str


def deploy_archive(
    ctx: Context,
    upload: IO[bytes],
    *,
    slot: str,
    source_name: str | None,
    ttl_seconds: int | None,
    site: SiteOptions | None = None,
    activate: bool = True,
) -> dict[str, Any]:
    """ZIP in, live site (or a draft) out. Bad input raises before anything is written or recorded."""
    validate_slot(slot)
    incoming = releases.incoming_dir(ctx.settings.releases_dir)
    try:
        with open_archive(upload) as archive:
            plan = plan_extraction(archive, upload, ArchiveLimits.from_settings(ctx.settings))
            ctx.artifacts.prepare()
            with ctx.artifacts.using():
                extract(archive, plan, incoming, ctx.artifacts)
    except DrophostError:
        releases.remove(incoming)
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        releases.remove(incoming)
        raise InvalidArchiveError(f"the archive could not be extracted ({type(exc).__name__})") from None
    return publish_tree(
        ctx,
        incoming,
        slot=slot,
        files=len(plan.files),
        size=plan.total_bytes,
        ttl_seconds=ttl_seconds,
        source=deployments.SOURCE_ZIP,
        source_name=source_name,
        trigger="upload",
        linked=True,  # extract() made every file a link into the artifact store
        site=site,
        activate=activate,
    )


def open_archive(raw: IO[bytes]) -> zipfile.ZipFile:
    """Open an upload as a ZIP, or raise the one error a client sees for anything unreadable."""
    try:
        return zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        # ValueError includes UnicodeDecodeError: names flagged UTF-8 that are not.
        raise InvalidArchiveError("the upload is not a readable ZIP archive") from None


def check_entry_name(name: str, limits: ArchiveLimits) -> list[str]:
    """Split an entry name into safe path components or raise; allow-list, not escaping."""
    if not name:
        raise InvalidArchiveError("the archive has an entry with an empty name")
    # Printable ASCII has no control or format characters, and its length in UTF-8 is its length: the
    # per-character lookup and the encoding are skipped in the common case (a digest deploy checks
    # every path of the site on each deploy).
    plain = name.isascii() and name.isprintable()
    if (len(name) if plain else len(name.encode("utf-8", "surrogatepass"))) > limits.max_path_length:
        raise InvalidArchiveError(
            f"the entry name {show(name)} is longer than {limits.max_path_length} bytes", entry=show(name)
        )
    if not plain and any(_is_control(ch) for ch in name):
        raise InvalidArchiveError(f"the entry name {show(name)} contains control characters", entry=show(name))
    if "\\" in name:
        raise InvalidArchiveError(f"the entry name {show(name)} contains a backslash", entry=show(name))
    if name.startswith("/"):
        raise InvalidArchiveError(f"the entry name {show(name)} is an absolute path", entry=show(name))
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        raise InvalidArchiveError(f"the entry name {show(name)} starts with a drive letter", entry=show(name))
    parts = name.rstrip("/").split("/")
    if len(parts) > limits.max_path_depth:
        raise InvalidArchiveError(
            f"the entry name {show(name)} is nested deeper than {limits.max_path_depth} folders", entry=show(name)
        )
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidArchiveError(
                f"the entry name {show(name)} contains an empty, '.' or '..' path component", entry=show(name)
            )
        if (len(part) if plain else len(part.encode("utf-8", "surrogatepass"))) > limits.max_name_length:
            raise InvalidArchiveError(
                f"a component of {show(name)} is longer than {limits.max_name_length} bytes", entry=show(name)
            )
    return parts


def plan_extraction(archive: zipfile.ZipFile, raw: IO[bytes], limits: ArchiveLimits) -> ExtractionPlan:
    """Check every entry of an opened archive and return the files to extract."""
    entries = archive.infolist()
    if not entries:
        raise InvalidArchiveError("the archive is empty")
    if len(entries) > limits.max_entries:
        raise InvalidArchiveError(f"the archive has more than {limits.max_entries} entries")
    check_no_overlap(entries, raw, archive_start_dir(archive))

    paths = PathSet()
    candidates: list[tuple[zipfile.ZipInfo, list[str]]] = []
    declared_total = 0
    compressed_total = 0
    for info in entries:
        # zipfile cuts `filename` at a NUL byte ("index.html\0../../x" reads as index.html): the name
        # checked is the central directory's whole name, so a NUL is refused like any control character.
        parts = check_entry_name(info.orig_filename, limits)
        if info.filename != info.orig_filename:
            shown = show(info.orig_filename)
            raise InvalidArchiveError(f"the entry name {shown} is not read as it is written", entry=shown)
        _check_entry_kind(info)
        if info.is_dir():
            paths.add_folder(info.filename, parts)
            continue
        paths.add_file(info.filename, parts)
        _check_ratio(info, limits)
        declared_total += info.file_size
        compressed_total += info.compress_size
        if declared_total > limits.max_unpacked_bytes:
            raise InvalidArchiveError(
                f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes", limit="max_unpacked_bytes"
            )
        candidates.append((info, parts))
    paths.finish()
    if declared_total > _RATIO_FREE_BYTES and declared_total > compressed_total * limits.max_compression_ratio:
        raise InvalidArchiveError(
            f"the archive expands more than {limits.max_compression_ratio} times; refusing a possible zip bomb"
        )

    # People zip the folder their site is in: that folder, found among the files with no dot in their
    # path, is not part of the site; .well-known/ is published at the top of what remains.
    prefix = _common_folder(parts for _, parts in candidates if is_published(parts) and WELL_KNOWN not in parts)
    skip = 1 if prefix else 0
    published = [
        (info, parts[skip:])
        for info, parts in candidates
        if parts[0] not in _IGNORED_TOP_LEVEL and (not prefix or parts[0] == prefix) and is_published_path(parts[skip:])
    ]
    if not published:
        raise InvalidArchiveError("the archive contains no files to publish")
    files = tuple(PlannedFile(entry=info, target="/".join(parts), size=info.file_size) for info, parts in published)
    return ExtractionPlan(files=files, total_bytes=sum(f.size for f in files), stripped_prefix=prefix)


class PathSet:
    """The paths of one tree: refuses duplicates, names differing only by case or Unicode
    normalisation, and a name used both as a file and as a folder."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    def add_folder(self, name: str, parts: list[str]) -> None:
        key = "/".join(_fold(part) for part in parts)
        if key in self.files:
            shown = show(name)
            raise InvalidArchiveError(f"the entry {shown} collides with another entry", entry=shown)
        self.folders.setdefault(key, name)

    def add_file(self, name: str, parts: list[str]) -> None:
        folded = [_fold(part) for part in parts]
        key = "/".join(folded)
        if key in self.files or key in self.folders:
            raise InvalidArchiveError(
                f"the entry {show(name)} collides with {show(self.files.get(key) or self.folders[key])} "
                "(same name, or differing only by case or Unicode normalisation)",
                entry=show(name),
            )
        self.files[key] = name
        # Each parent's key grows by one folded component: the same keys as joining each prefix anew.
        parent = folded[0]
        for depth in range(1, len(folded)):
            if depth > 1:
                parent = f"{parent}/{folded[depth - 1]}"
            if parent in self.files:
                raise InvalidArchiveError(f"the entry {show(name)} is inside a file, not a folder", entry=show(name))
            self.folders.setdefault(parent, name)

    def finish(self) -> None:
        for folder in self.folders:
            if folder in self.files:
                shown = show(self.files[folder])
                raise InvalidArchiveError(f"the entry {shown} is both a file and a folder", entry=shown)


def is_published(parts: list[str]) -> bool:
    """Dotfiles (.git/, .env, .DS_Store; .well-known/ at the top is published) and macOS resource
    forks are never published."""
    return bool(parts) and parts[0] not in _IGNORED_TOP_LEVEL and is_published_path(parts)


def archive_start_dir(archive: zipfile.ZipFile) -> int:
    # zipfile keeps the central directory's offset here; entries' data must lie before it.
    return int(getattr(archive, "start_dir", 0))


def check_no_overlap(entries: list[zipfile.ZipInfo], raw: IO[bytes], start_dir: int) -> None:
    """Refuse archives whose entries share bytes (overlapping-entry zip bombs); 3.11 does not check."""
    spans: list[tuple[int, int, str]] = []
    for info in entries:
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise InvalidArchiveError(f"the entry {show(info.filename)} has no valid local header")
        fields = _LOCAL_HEADER.unpack(header)
        name_length, extra_length = fields[9], fields[10]
        if b"\0" in raw.read(name_length):
            shown = show(info.orig_filename)
            raise InvalidArchiveError(f"the entry name {shown} contains control characters", entry=shown)
        data_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        spans.append((info.header_offset, data_start + info.compress_size, info.filename))
    spans.sort()
    for (start, end, name), (next_start, _, next_name) in zip(spans, spans[1:], strict=False):
        if end > next_start or start == next_start:
            raise InvalidArchiveError(
                f"the entries {show(name)} and {show(next_name)} overlap; refusing a possible zip bomb"
            )
    if spans and start_dir and spans[-1][1] > start_dir:
        raise InvalidArchiveError("an entry's data runs into the archive's central directory")


def extract(
    archive: zipfile.ZipFile, plan: ExtractionPlan, destination: Path, store: ArtifactStore, *, workers: int = 2
) -> int:
    """Build the planned tree under a fresh destination as hard links into the artifact store.

    Each file is inflated and hashed once. A small file (up to SMALL_FILE) is held in memory, so
    when the store already has it nothing is written, and when it is new it is written once, at
    its place in the tree, and that very file becomes the blob: one file created per new file, as
    `unzip` creates one. A larger file is streamed; the store's crc32+size hint spares writing it
    again when it is known. `workers` threads share the entries: inflating, hashing and writing
    release the GIL, so both cores work. Returns the bytes written.
    """
    destination.mkdir(mode=0o755, parents=False, exist_ok=False)
    folders = {os.path.dirname(planned.target) for planned in plan.files} - {""}
    made: set[str] = set()
    for folder in sorted(folders):
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix not in made:
                os.mkdir(destination / prefix, 0o755)
                made.add(prefix)
    stop = threading.Event()

    def extract_share(share: Sequence[PlannedFile]) -> int:
        written = 0
        for planned in share:
            if stop.is_set():
                break
            try:
                written += _extract_one(archive, planned, destination, store)
            except BaseException:
                stop.set()
                raise
        return written

    # Every `workers`-th file: neighbours in the archive are alike in size, so the shares are even.
    shares = [plan.files[index::workers] for index in range(max(1, workers))]
    if len(shares) == 1:
        return extract_share(shares[0])
    with ThreadPoolExecutor(len(shares)) as pool:
        futures = [pool.submit(extract_share, share) for share in shares]
        return sum(future.result() for future in futures)


def _extract_one(archive: zipfile.ZipFile, planned: PlannedFile, destination: Path, store: ArtifactStore) -> int:
    target = f"{destination}/{planned.target}"
    try:
        if planned.size <= SMALL_FILE:
            data = _entry_bytes(archive, planned)
            digest = hashlib.sha256(data).hexdigest()
            if store.has(digest):
                store.link_into(digest, Path(target))
                return 0
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            store.adopt_file(target, digest)
            return planned.size
        digest_or_none = _known_digest(archive, planned, store)
        if digest_or_none is not None:
            store.link_into(digest_or_none, Path(target))
            return 0
        digest = store.add_stream(_entry_chunks(archive, planned), limit=planned.size)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise InvalidArchiveError(
            f"the entry {show(planned.entry.filename)} is corrupt or truncated ({_reason(exc)})"
        ) from None
    store.link_into(digest, Path(target))
    return planned.size


def _entry_bytes(archive: zipfile.ZipFile, planned: PlannedFile) -> bytes:
    """A small entry's bytes, read to its end so that zipfile checks its crc32."""
    with archive.open(planned.entry) as source:
        data = source.read(planned.size + 1)
    if len(data) > planned.size:
        raise InvalidArchiveError(f"the entry {show(planned.entry.filename)} is larger than it declares")
    return data


def _entry_chunks(archive: zipfile.ZipFile, planned: PlannedFile) -> Iterator[bytes]:
    read = 0
    with archive.open(planned.entry) as source:
        while chunk := source.read(_CHUNK):
            read += len(chunk)
            if read > planned.size:
                raise InvalidArchiveError(f"the entry {show(planned.entry.filename)} is larger than it declares")
            yield chunk


def _known_digest(archive: zipfile.ZipFile, planned: PlannedFile, store: ArtifactStore) -> str | None:
    """The digest of an entry the store already holds, checked by hashing (the crc is only a hint)."""
    hint = store.digest_hint(planned.entry.CRC, planned.size)
    if hint is None:
        return None
    return hint if stream_digest(_entry_chunks(archive, planned)) == hint else None


def _check_entry_kind(info: zipfile.ZipInfo) -> None:
    shown = show(info.filename)
    if info.flag_bits & 0x1:
        raise InvalidArchiveError(f"the entry {shown} is encrypted", entry=shown)
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise InvalidArchiveError(
            f"the entry {shown} uses an unsupported compression method ({info.compress_type}); use stored or deflate",
            entry=shown,
        )
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise InvalidArchiveError(f"the entry {shown} is a symbolic link", entry=shown)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidArchiveError(f"the entry {shown} is not a regular file or folder", entry=shown)


def _check_ratio(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    if info.file_size <= _RATIO_FREE_BYTES:
        return
    if info.compress_size <= 0 or info.file_size > info.compress_size * limits.max_compression_ratio:
        shown = show(info.filename)
        raise InvalidArchiveError(
            f"the entry {shown} expands more than {limits.max_compression_ratio} times; refusing a possible zip bomb",
            entry=shown,
        )


def _common_folder(all_parts: Iterable[list[str]]) -> str:
    """The single top-level folder every file sits in (people zip a folder), else ""."""
    first: str | None = None
    for parts in all_parts:
        if len(parts) < 2:
            return ""
        if first is None:
            first = parts[0]
        elif parts[0] != first:
            return ""
    return first or ""


def _fold(part: str) -> str:
    return unicodedata.normalize("NFC", part).casefold()


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def _reason(exc: BaseException) -> str:
    return type(exc).__name__

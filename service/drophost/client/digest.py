"""Client side of digest uploads: hash a folder, send the file list, upload only what is missing.

The missing files travel in a few large batches (`POST /api/uploads/{id}/batch`), several in
flight at once. The server stores each file of a batch as soon as its last byte arrives, so after a
broken connection it still has every file it completed; the client asks which are missing
(`GET /api/uploads/{id}`) and sends only those again.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from drophost.client.hashcache import hash_scanned
from drophost.client.http import EXIT_UNREACHABLE, EXIT_USAGE, ApiClient, ClientError
from drophost.digests import file_digest

Progress = Callable[[int, int], None]  # bytes sent, bytes to send
FileProgress = Callable[[int, int, int, int], None]  # the same, then files sent, files to send

BATCH_BYTES = 8 * 1024 * 1024  # the most a batch aims at; a larger file goes alone
IN_FLIGHT = 3  # batches sent at once: the server hashes and writes one while receiving the next
ATTEMPTS = 3  # rounds of sending what the server still lacks, after a broken connection
RETRY_PAUSE = 1.0  # seconds, times the round: time for a restarting server to come back
PIECE = 256 * 1024  # bytes handed to the socket at once; small files share a piece
INLINE_BYTES = BATCH_BYTES  # the most sent with the file list, in one request (POST /api/uploads/deploy)


if TYPE_CHECKING:
    from concurrent.futures import Future


class Blob(NamedTuple):
    # A tuple, not a dataclass: dataclasses' import (inspect, ast, dis) cost every deploy ~10 ms.
    digest: str
    path: Path
    size: int


# The server publishes no dotfile or dot-folder but this folder at the top (releases.is_published_path;
# the client imports no server module).
WELL_KNOWN = ".well-known"


def scan_folder(folder: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, skipping symlinks and dotfiles (which are never published)."""
    return {rel: Path(path) for rel, (path, _) in scan_stats(folder).items()}


def scan_stats(folder: Path) -> dict[str, tuple[str, os.stat_result]]:
    """Relative POSIX path -> (the file's path, its lstat), sorted, as scan_folder finds them.

    One `scandir` per folder, whose entries know their type without a system call per file, and
    one `lstat` per file, which the digest cache compares (a file is never a link here): on a
    1,000-file site that is most of what a deploy of one changed file costs the CLI. Paths stay
    text: a Path per file cost more than its stat."""
    found: dict[str, tuple[str, os.stat_result]] = {}
    pending: list[tuple[str, str]] = [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not name.startswith(".") or (not prefix and name == WELL_KNOWN):
                        pending.append((entry.path, f"{prefix}{name}/"))
                elif entry.is_file(follow_symlinks=False) and not name.startswith("."):
                    found[prefix + name] = (entry.path, entry.stat(follow_symlinks=False))
    return dict(sorted(found.items()))


def plan_batches(blobs: Sequence[Blob], *, target: int, at_least: int) -> list[list[Blob]]:
    """Batches of about equal bytes, in order: a multiple of `at_least` of them (as the number of
    files allows), none much above `target` unless one file is (pure)."""
    total = sum(blob.size for blob in blobs)
    # A multiple of `at_least`, so that the last round of batches in flight is a full one too.
    count = min(math.ceil(math.ceil(total / target) / at_least) * at_least, len(blobs)) or 1
    batches: list[list[Blob]] = []
    current: list[Blob] = []
    filled = 0
    for blob in blobs:
        current.append(blob)
        filled += blob.size
        # The share is worked out again after each batch, so that one large file does not leave
        # the other batches lopsided.
        if len(batches) < count - 1 and filled >= total / (count - len(batches)):
            batches.append(current)
            total -= filled
            current, filled = [], 0
    if current:
        batches.append(current)
    return batches


def frame_header(blob: Blob) -> bytes:
    """The line that opens a file in a batch: its digest, a space, its size, a newline (pure)."""
    return f"{blob.digest} {blob.size}\n".encode()


def batch_size(batch: Sequence[Blob]) -> int:
    return sum(len(frame_header(blob)) + blob.size for blob in batch)


class Tracker:
    """Bytes and files sent so far, shared by the sending threads, reported to the callbacks."""

    def __init__(self, blobs: Sequence[Blob], progress: Progress | None, file_progress: FileProgress | None) -> None:
        self.total = sum(blob.size for blob in blobs)
        self.files = len(blobs)
        self.sent = 0
        self.done = 0
        self._progress = progress
        self._file_progress = file_progress
        self._lock = threading.Lock()

    def add(self, sent: int, done: int) -> None:
        with self._lock:
            self.sent += sent
            self.done += done
            self._report()

    def restart(self, still_missing: Sequence[Blob]) -> None:
        """After a broken batch: everything but `still_missing` has arrived."""
        with self._lock:
            self.sent = self.total - sum(blob.size for blob in still_missing)
            self.done = self.files - len(still_missing)
            self._report()

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self.sent, self.total)
        if self._file_progress is not None:
            self._file_progress(self.sent, self.total, self.done, self.files)


def deploy_folder(
    client: ApiClient,
    folder: Path,
    *,
    slot: str,
    ttl: str | None = None,
    progress: Progress | None = None,
    file_progress: FileProgress | None = None,
    force: bool = False,
    activate: bool = True,
    hash_cache: Path | None = None,
) -> dict[str, Any]:
    """Deploy a folder by digest: only files the server lacks are sent. Returns the deployment.

    `hash_cache` is a file remembering the digests of this folder's files between deploys, so that
    only files changed since are read (client/hashcache.py)."""
    scanned = scan_stats(folder)
    if not scanned:
        raise ClientError(f"{folder} has no files to publish", EXIT_USAGE)
    digests, fresh = hash_scanned(scanned, hash_cache, file_digest)
    files = {rel: path for rel, (path, _) in scanned.items()}
    body: dict[str, Any] = {"slot": slot, "files": digests, "name": (folder.resolve().name or "site")[:255]}
    if ttl:
        body["ttl"] = ttl
    if force:
        body["force"] = True
    guess = likely_new(files, digests, fresh)
    started = None if guess is None else deploy_at_once(client, body, guess, activate, progress, file_progress)
    if started is not None and "missing" not in started:
        started["uploaded_files"] = len(guess or ())
        started["uploaded_bytes"] = sum(blob.size for blob in guess or ())
        return started
    # The guessed files the server took before it answered with what else it lacks.
    sent = (guess or []) if started is not None else []
    if started is None:
        started = client.request("POST", "/api/uploads", body, long=True)
    upload_id = started["upload_id"]
    by_digest = {digest: files[rel] for rel, digest in digests.items()}
    # In path order: neighbouring files of a site tend to sit together on the disk.
    order = {digest: rel for rel, digest in sorted(digests.items(), reverse=True)}
    missing = [
        Blob(digest, Path(by_digest[digest]), os.stat(by_digest[digest]).st_size)
        for digest in sorted(set(started["missing"]), key=order.__getitem__)
    ]
    tracker = Tracker(missing, progress, file_progress)
    tracker.add(0, 0)
    send_blobs(client, upload_id, missing, tracker)
    finalize = {} if activate else {"activate": False}
    result: dict[str, Any] = client.request("POST", f"/api/uploads/{upload_id}/finalize", finalize, long=True)
    result["uploaded_files"] = len(sent) + len(missing)
    result["uploaded_bytes"] = sum(blob.size for blob in sent) + tracker.total
    return result


def likely_new(files: dict[str, str], digests: dict[str, str], fresh: set[str]) -> list[Blob] | None:
    """The files to send with the file list: those hashed now, when the digest cache remembered the
    others (so they were most likely deployed from this folder before) and they are few; else None."""
    if len(fresh) == len(files):
        return None
    blobs = {digests[rel]: Blob(digests[rel], Path(files[rel]), os.stat(files[rel]).st_size) for rel in sorted(fresh)}
    chosen = list(blobs.values())
    return chosen if sum(blob.size for blob in chosen) <= INLINE_BYTES else None


def deploy_at_once(
    client: ApiClient,
    body: dict[str, Any],
    blobs: Sequence[Blob],
    activate: bool,
    progress: Progress | None,
    file_progress: FileProgress | None,
) -> dict[str, Any] | None:
    """POST /api/uploads/deploy: the file list and `blobs` in one request. The deployment; or, when the
    server lacks other files too (the guess was wrong), the open upload with what it lacks; or None
    when this server has no such endpoint or the connection broke (the caller starts over, step by step)."""
    first = json.dumps(body if activate else {**body, "activate": False}, separators=(",", ":")).encode() + b"\n"
    tracker = Tracker(blobs, progress, file_progress)
    tracker.add(0, 0)

    def pieces() -> Iterator[bytes]:
        yield first
        yield from batch_body(blobs, tracker)

    try:
        answer: dict[str, Any] = client.post_stream("/api/uploads/deploy", pieces(), len(first) + batch_size(blobs))
    except ClientError as exc:
        if is_broken(exc) or exc.status in (404, 405):
            return None
        raise
    return answer


def send_blobs(client: ApiClient, upload_id: str, blobs: Sequence[Blob], tracker: Tracker) -> None:
    """Send every blob in batches; after a broken connection, send again what the server still lacks."""
    pending = list(blobs)
    for attempt in range(1, ATTEMPTS + 1):
        batches = plan_batches(pending, target=BATCH_BYTES, at_least=IN_FLIGHT)
        broken = send_batches(client, upload_id, batches, tracker)
        if broken is None:
            return
        if attempt == ATTEMPTS:
            raise broken
        time.sleep(RETRY_PAUSE * attempt)
        still = set(client.get(f"/api/uploads/{upload_id}")["missing"])
        pending = [blob for blob in pending if blob.digest in still]
        tracker.restart(pending)


def send_batches(
    client: ApiClient, upload_id: str, batches: Sequence[Sequence[Blob]], tracker: Tracker
) -> ClientError | None:
    """Send the batches, IN_FLIGHT at a time. A refusal (4xx) raises; a broken connection is returned."""
    # Here: the one-request deploy of a few changed files never needs a pool (nor logging, its import).
    from concurrent.futures import ThreadPoolExecutor, as_completed

    path = f"/api/uploads/{upload_id}/batch"
    broken: ClientError | None = None
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures: list[Future[Any]] = [
            pool.submit(client.post_stream, path, batch_body(batch, tracker), batch_size(batch)) for batch in batches
        ]
        try:
            for future in as_completed(futures):
                try:
                    future.result()
                except ClientError as exc:
                    if not is_broken(exc):
                        raise
                    broken = broken or exc
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return broken


def is_broken(error: ClientError) -> bool:
    """The connection broke or the service was briefly away, rather than the server refusing the batch."""
    return error.exit_code == EXIT_UNREACHABLE or error.status in (502, 503, 504)


def batch_body(batch: Sequence[Blob], tracker: Tracker) -> Iterator[bytes]:
    """The batch's bytes, about PIECE at a time, read from the files as they go out (never a whole batch)."""
    out = bytearray()
    counted = [0, 0]  # bytes and files in `out`, reported once it has gone out

    def flush() -> bytes:
        piece = bytes(out)
        out.clear()
        return piece

    for blob in batch:
        out += frame_header(blob)
        left = blob.size
        with open(blob.path, "rb") as handle:
            while left:
                piece = handle.read(min(PIECE, left))
                if not piece:
                    raise ClientError(f"{blob.path} changed while it was being deployed; deploy again", EXIT_USAGE)
                out += piece
                left -= len(piece)
                counted[0] += len(piece)
                if left and len(out) >= PIECE:
                    yield flush()
                    tracker.add(counted[0], 0)
                    counted[0] = 0
        counted[1] += 1
        if len(out) >= PIECE:
            yield flush()
            tracker.add(*counted)
            counted[:] = [0, 0]
    if out:
        yield flush()
    tracker.add(*counted)

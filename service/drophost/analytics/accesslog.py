"""Ingest nginx's JSON access log into PostgreSQL, incrementally and exactly once.

The position reached in the log is stored with the rows of the same batch, in one transaction:
a crash or restart resumes from there. A file is known by device, inode and the hash of its first
line; when the log is rotated (renamed, then nginx reopens it on SIGUSR1) the renamed file is
finished before the new one is read, and it is checked again later for lines nginx wrote to it
before it reopened. Memory stays bounded: at most `chunk_bytes` of the log at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from psycopg_pool import ConnectionPool

from drophost.names import is_valid_slot
from drophost.store import accesslogs

log = logging.getLogger(__name__)

_HEAD_BYTES = 4096


@dataclass(frozen=True)
class FileId:
    device: int
    inode: int
    head: str


def parse_line(line: bytes) -> tuple[Any, ...] | None:
    """One log line -> a row for access_logs; None for lines that are not a site request."""
    try:
        entry = json.loads(line)
        slot = entry["slot"]
        if not isinstance(slot, str) or not is_valid_slot(slot):
            return None
        at = datetime.fromtimestamp(float(entry["msec"]), UTC)
        return (
            slot,
            at,
            str(entry.get("method", ""))[:16],
            logged_path(entry)[:2048],
            int(entry["status"]),
            int(entry.get("bytes") or 0),
            float(entry.get("request_time") or 0.0) * 1000.0,
            str(entry.get("remote", ""))[:64],
            str(entry.get("referer", ""))[:1024] or None,
            str(entry.get("user_agent", ""))[:512] or None,
        )
    except (ValueError, KeyError, TypeError, OverflowError):
        return None


def logged_path(entry: dict[str, Any]) -> str:
    """The path of a log entry, decoded: nginx logs a 404 with the path as requested (see nginx.conf.j2)."""
    path = str(entry.get("uri", ""))
    return unquote(path, errors="replace") if entry.get("status") == 404 else path


def complete_lines(chunk: bytes) -> tuple[list[bytes], int]:
    """The whole lines of a chunk and how many bytes they take (a trailing partial line waits)."""
    end = chunk.rfind(b"\n") + 1
    return chunk[:end].splitlines(), end


def identify(path: Path) -> FileId | None:
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            first = handle.readline(_HEAD_BYTES)
    except FileNotFoundError:
        return None
    head = hashlib.sha256(first).hexdigest() if first.endswith(b"\n") else ""
    return FileId(stat.st_dev, stat.st_ino, head)


def same_file(known_device: int | None, known_inode: int | None, known_head: str, found: FileId) -> bool:
    if (known_device, known_inode) != (found.device, found.inode):
        return False
    # An empty head was recorded before the first line was complete: the inode decides.
    return not known_head or not found.head or known_head == found.head


class Ingester:
    def __init__(
        self, pool: ConnectionPool[Any], log_path: Path, *, chunk_bytes: int = 1024 * 1024, retention_days: int = 0
    ) -> None:
        self.pool = pool
        self.log_path = log_path
        self.chunk_bytes = chunk_bytes
        self.retention_days = retention_days
        self._lock = threading.Lock()

    def ingest(self) -> int:
        """Read everything new; return how many site requests were stored."""
        stored = 0
        with self._lock:
            while True:
                count, more = self._batch()
                stored += count
                if not more:
                    break
            if self.retention_days > 0:
                with self.pool.connection() as conn:
                    cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
                    accesslogs.delete_access_logs_before(conn, cutoff)
        return stored

    def rotate_if_larger_than(self, limit: int, reopen: Callable[[], None]) -> bool:
        """Rename a large log to <log>.1 and have nginx reopen its logs (SIGUSR1)."""
        live = identify(self.log_path)
        if live is None or self.log_path.stat().st_size < limit:
            return False
        with self.pool.connection() as conn:
            cursor = accesslogs.get_cursor(conn, str(self.log_path))
        # Only once the previous rotation is behind us: <log>.1 must be read to its end first.
        if cursor is None or not same_file(cursor["device"], cursor["inode"], cursor["head"], live):
            return False
        with self._lock:
            old = self.log_path.with_name(self.log_path.name + ".1")
            # The older file was finished before the previous rotation's file replaced it as "previous".
            old.unlink(missing_ok=True)
            os.rename(self.log_path, old)
            reopen()
        self.ingest()
        return True

    # -- one batch: read a chunk, store its rows and the new position in one transaction ----------
    def _batch(self) -> tuple[int, bool]:
        key = str(self.log_path)
        with self.pool.connection() as conn, conn.transaction():
            cursor = dict(accesslogs.lock_cursor(conn, key))
            current = identify(self.log_path)
            # 1. lines nginx wrote into the previous file (before it reopened its logs)
            if cursor["prev_inode"] is not None:
                prev = self._find_rotated(cursor["prev_device"], cursor["prev_inode"], cursor["prev_head"])
                if prev is not None:
                    rows, advanced, more = self._read(prev, cursor["prev_position"])
                    if advanced:
                        accesslogs.insert_access_logs(conn, rows)
                        cursor["prev_position"] += advanced
                        accesslogs.save_cursor(conn, key, cursor)
                        return len(rows), True
            # 2. the file being read now
            if cursor["inode"] is None:
                if current is None:
                    return 0, False
                cursor.update(device=current.device, inode=current.inode, head=current.head, position=0)
            if current is not None and same_file(cursor["device"], cursor["inode"], cursor["head"], current):
                path: Path | None = self.log_path
                if current.head and not cursor["head"]:
                    cursor["head"] = current.head
                if self.log_path.stat().st_size < cursor["position"]:
                    # Truncated in place (copytruncate): start again, and learn its new first line.
                    cursor.update(position=0, head="")
            else:
                path = self._find_rotated(cursor["device"], cursor["inode"], cursor["head"])
            if path is not None:
                rows, advanced, more = self._read(path, cursor["position"])
                if advanced:
                    if path == self.log_path and not cursor["head"]:
                        found = identify(path)
                        cursor["head"] = found.head if found else ""
                    accesslogs.insert_access_logs(conn, rows)
                    cursor["position"] += advanced
                    accesslogs.save_cursor(conn, key, cursor)
                    return len(rows), True
            # 3. the current file was rotated away and is read to its end: move on to the new one
            if current is not None and path != self.log_path:
                if path is None:
                    log.warning("the access log was replaced before it was read to the end; lines may be missing")
                cursor.update(
                    prev_device=cursor["device"],
                    prev_inode=cursor["inode"],
                    prev_head=cursor["head"],
                    prev_position=cursor["position"],
                    device=current.device,
                    inode=current.inode,
                    head=current.head,
                    position=0,
                )
                accesslogs.save_cursor(conn, key, cursor)
                return 0, True
            accesslogs.save_cursor(conn, key, cursor)
            return 0, False

    def _read(self, path: Path, position: int) -> tuple[list[tuple[Any, ...]], int, bool]:
        try:
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read(self.chunk_bytes)
        except FileNotFoundError:
            return [], 0, False
        lines, used = complete_lines(chunk)
        if used == 0 and len(chunk) == self.chunk_bytes:
            used = len(chunk)  # one absurdly long line: skip it rather than stall
        rows = [row for row in (parse_line(line) for line in lines) if row is not None]
        return rows, used, used > 0

    def _find_rotated(self, device: int | None, inode: int | None, head: str) -> Path | None:
        """The renamed log with this identity, next to the live one (access.log.1 and the like)."""
        if inode is None:
            return None
        for candidate in self._rotated_candidates():
            found = identify(candidate)
            if found is not None and same_file(device, inode, head, found):
                return candidate
        return None

    def _rotated_candidates(self) -> Iterator[Path]:
        prefix = self.log_path.name + "."
        for entry in sorted(self.log_path.parent.iterdir()):
            if entry.name.startswith(prefix) and not entry.name.endswith((".gz", ".bz2", ".xz", ".zst")):
                yield entry

"""A build's log: its output lines with times, one file per deployment under <data>/builds/logs.

Capped (DROPHOST_BUILD_LOG_BYTES): past the cap the lines are no longer written (one line says so),
but the last ones are still kept in memory for the deployment's error. Kept as long as retention
keeps the deployment's release (pipeline/retention.py removes it with the release).
While a BuildLog has its file open it holds a shared lock on it (flock, released by the kernel when
the file is closed or the process ends): a follower knows the last line is written once the lock is
gone, instead of waiting a while after the deployment has ended.
"""

from __future__ import annotations

import collections
import fcntl
import os
import time
from pathlib import Path

TAIL_LINES = 20


def log_path(builds_dir: Path, deployment_id: int) -> Path:
    return builds_dir / "logs" / f"{deployment_id}.log"


def read_log(builds_dir: Path, deployment_id: int, offset: int = 0) -> bytes:
    """The log from `offset` on (empty when the deployment had no build)."""
    try:
        with open(log_path(builds_dir, deployment_id), "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""


class BuildLog:
    def __init__(self, builds_dir: Path, deployment_id: int, max_bytes: int) -> None:
        path = log_path(builds_dir, deployment_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 (closed by close())
        fcntl.flock(self._file.fileno(), fcntl.LOCK_SH)  # shared: one build's writers never wait for each other
        self._max = max_bytes
        self._written = 0
        self._full = False
        self._started = time.monotonic()
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def line(self, text: str) -> None:
        text = text.replace("\r", "")
        self.tail.append(text)
        if self._full:
            return
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        data = f"{stamp} {text}\n".encode("utf-8", "replace")
        if self._written + len(data) > self._max:
            self._full = True
            data = f"{stamp} [the log is cut here: it reached {self._max} bytes]\n".encode()
        self._file.write(data)
        self._written += len(data)

    def tail_text(self) -> str:
        return "\n".join(self.tail)

    def close(self) -> None:
        self._file.close()


def is_written(builds_dir: Path, deployment_id: int) -> bool:
    """Whether a BuildLog has this log open still (more lines may come)."""
    try:
        fd = os.open(log_path(builds_dir, deployment_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the lock just taken
    return False


def logged_ids(builds_dir: Path) -> list[int]:
    """The deployments that have a log on disk."""
    try:
        names = os.listdir(builds_dir / "logs")
    except FileNotFoundError:
        return []
    return sorted(int(name[:-4]) for name in names if name.endswith(".log") and name[:-4].isdigit())


def remove_log(builds_dir: Path, deployment_id: int) -> None:
    try:
        os.unlink(log_path(builds_dir, deployment_id))
    except FileNotFoundError:
        pass

"""The processes `drophost up` runs: children that die with it, a service restarted when it dies, and
what an earlier run left behind, found through its own pid files and stopped."""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Restarts wait 1, 2, 4 ... seconds, at most this long; a service that ran a minute starts afresh.
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0
# The file a restarted service reads to learn that its predecessor died (and how).
DIED_MARKER = "service-died"
STATE_FILE = "supervisor.json"


def die_with_parent(sig: int, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A preexec function: the child gets `sig` when this process dies, whatever kills it.

    Set after `then` (which may drop root): the kernel clears the setting when credentials change.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if then is not None:
            then()
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # the parent died before the line above: follow it now
            os._exit(1)

    return preexec


def become_subreaper() -> None:
    """Orphans of our children (git that a killed service left running) become our children, so
    they can be found and stopped instead of living on under init."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def stop_orphans(keep: set[int]) -> list[int]:
    """Kill and reap every child of this process but `keep` (what a dead service left behind)."""
    orphans = sorted(_children() - keep)
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in orphans:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    if orphans:
        log.warning("stopped %d process(es) the service left behind: %s", len(orphans), orphans)
    return orphans


def _children() -> set[int]:
    me = os.getpid()
    found: set[int] = set()
    try:
        for task in os.scandir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{task.name}/children", "rb") as handle:
                found.update(int(pid) for pid in handle.read().split())
    except (OSError, ValueError):
        return set()
    return found


def reap_zombies(skip: set[int]) -> list[int]:
    """Reap the orphans that have already exited, except `skip` (children someone waits for).

    As a subreaper this process inherits what its children's children leave: bubblewrap exits
    without waiting for the sandbox's first process, so every build would otherwise leave a zombie
    holding a pid for as long as `drophost up` runs. Only zombies: a live orphan is left alone
    while the service runs (stop_orphans stops those when it dies)."""
    reaped = []
    for pid in sorted(_children() - skip):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                state = handle.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z":
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
        except ChildProcessError:
            pass
    return reaped


def death_reason(returncode: int) -> str:
    """How a child ended, as a sentence for the log, /health and the deployment it interrupted (pure)."""
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return f"the service was killed by {name} (the kernel's out-of-memory killer sends this)"
        return f"the service was killed by {name}"
    return f"the service exited with status {returncode}"


def next_delay(failures: int) -> float:
    """Seconds before restart number `failures` (1, 2, 4, ... capped) (pure)."""
    return min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, failures - 1))


@dataclass
class SupervisorState:
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
            "history": self.history[-10:],
        }


def read_state(run_dir: Path) -> dict[str, object] | None:
    """What the supervisor of `drophost up` last wrote (None when the service runs without one)."""
    try:
        data = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def take_death(run_dir: Path) -> str | None:
    """The reason the previous service process died, if it died (read once, then forgotten)."""
    marker = run_dir / DIED_MARKER
    try:
        reason = marker.read_text().strip()
    except OSError:
        return None
    marker.unlink(missing_ok=True)
    return reason or None


class Supervisor:
    """Runs the service as a child and starts it again, with backoff, whenever it dies on its own."""

    def __init__(self, run_dir: Path, *, owner: int | None = None):
        self.run_dir = run_dir
        self.owner = owner
        self.child: subprocess.Popen[bytes] | None = None
        self.state = SupervisorState()
        self.stopping = threading.Event()
        self.hangups = threading.Event()
        self.ready: Callable[[], bool] = lambda: True
        # Children that are not the service's (nginx, PostgreSQL): never stopped as its leftovers.
        self.keep: set[int] = set()

    def run(self, start: Callable[[], subprocess.Popen[bytes]]) -> int:
        """Until stop(): start the service, wait, record a death, back off, start again."""
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.child = start()
            self._write_pid(self.child.pid)
            returncode = self._wait(self.child)
            stop_orphans(self.keep)
            if self.stopping.is_set():
                return returncode
            reason = death_reason(returncode)
            failures = 1 if time.monotonic() - started >= STABLE_SECONDS else failures + 1
            delay = next_delay(failures)
            self._record_death(reason)
            log.error("%s; starting it again in %.0f s (restart %d)", reason, delay, self.state.restarts)
            print(f"drophost: {reason}; starting it again in {delay:.0f} s", flush=True)
            self.stopping.wait(delay)
        return 0

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                returncode = child.wait(timeout=0.2)
                return returncode
            except subprocess.TimeoutExpired:
                pass
            reap_zombies(self.keep | {child.pid})
            if self.hangups.is_set() and self.ready():
                self.hangups.clear()
                child.send_signal(signal.SIGHUP)

    def hangup(self) -> None:
        """Forward SIGHUP (apply deploy.yaml again) as soon as the service answers (from a signal handler)."""
        if not (self.child is not None and self.child.poll() is None and self.ready()):
            # os.write, not print: a handler must not re-enter a buffered stream print may be using.
            os.write(sys.stdout.fileno(), b"drophost: SIGHUP while starting: deploy.yaml is applied again once up\n")
        self.hangups.set()

    def stop(self) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 30.0) -> None:
        child = self.child
        if child is None:
            return
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        stop_orphans(self.keep)
        (self.run_dir / "service.pid").unlink(missing_ok=True)

    def _record_death(self, reason: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.state.restarts += 1
        self.state.last_exit, self.state.last_exit_at = reason, now
        self.state.history.append({"at": now, "reason": reason})
        _write_file(self.run_dir / DIED_MARKER, reason + "\n", self.owner)
        _write_file(self.run_dir / STATE_FILE, json.dumps(self.state.to_json()) + "\n", self.owner)

    def _write_pid(self, pid: int) -> None:
        _write_file(self.run_dir / "service.pid", f"{pid}\n", self.owner)


def _write_file(path: Path, text: str, owner: int | None) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    if owner is not None:
        os.chown(temp, owner, -1)
    os.replace(temp, path)


def hold_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on `path` for as long as the returned file stays open (None: another holds it)."""
    handle = open(path, "a+")  # kept open: closing it would release the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def stop_leftover(pid_file: Path, marker: str, sig: int, *, wait: float = 30.0) -> int | None:
    """Stop the process an earlier run recorded in `pid_file`, only if its command line names `marker`
    (our data directory): a reused pid of someone else's process is never touched. Returns the pid stopped."""
    try:
        words = pid_file.read_text().split()
        pid = int(words[0]) if words else 0
    except (OSError, ValueError):
        return None
    if pid <= 1 or not _command_line_names(pid, marker):
        return None
    log.warning("stopping process %d left running by an earlier run (%s)", pid, pid_file.name)
    print(f"drophost: stopping process {pid} left running by an earlier run ({pid_file.name})", flush=True)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    return pid


def _command_line_names(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline and _alive(pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"

"""Running a build command in a bubblewrap sandbox: the argv is planned (pure), a thin runner runs it.

Inside: /usr (and /bin, /lib* as the host has them) read-only, a few files of /etc, the build's own
copy of its repository at /build and the slot's cache folders writable, a private /tmp, its own
/proc in its own pid namespace, no network unless asked, every namespace unshared. Nothing of the
data directory, the API token, the database or the service's environment is mounted or passed.
Limits on CPU time, address space, processes, open files and file size are set by prlimit inside;
wall time by the runner, which kills the sandbox (and, through its pid namespace, all it started).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drophost.errors import BuildError

INSIDE = "/build"
# How long the sandbox's processes get to go once bwrap has exited (the kernel kills them at once).
_SANDBOX_END_SECONDS = 10.0
PATH = "/usr/local/bin:/usr/bin:/bin"
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What of /etc a build may need (the loader's cache, names of users, certificates for network: true).
_ETC_FILES = (
    "ld.so.cache",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "alternatives",
    "ssl",
    "ca-certificates",
    "mime.types",
)
_ETC_NETWORK = ("resolv.conf", "hosts", "gai.conf")
_LINE_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_bytes: int
    processes: int
    open_files: int
    file_bytes: int


@dataclass(frozen=True)
class Job:
    """One build: what runs, in which copy of the tree, with which caches and variables."""

    command: tuple[str, ...]
    tree: Path  # the build's own copy of the repository, mounted at /build
    workdir: str  # the site's path inside it ("" for the root)
    caches: tuple[tuple[Path, str], ...] = ()  # (folder kept for the slot, folder relative to workdir)
    env: tuple[tuple[str, str], ...] = ()
    network: bool = False
    tools: tuple[Path, ...] = ()  # read-only folders whose bin/ goes first on PATH


@dataclass(frozen=True)
class System:
    """Which top-level system folders are links (merged /usr) and which are folders, and what /etc holds."""

    links: tuple[tuple[str, str], ...]
    folders: tuple[str, ...]
    etc: tuple[str, ...]


def inside_path(job: Job, relative: str = "") -> str:
    return "/".join(part for part in (INSIDE, job.workdir, relative) if part)


def limit_argv(limits: Limits) -> list[str]:
    return [
        "/usr/bin/prlimit",
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
    ]


def environment(job: Job) -> dict[str, str]:
    tool_bins = ":".join(f"{tool}/bin" for tool in job.tools)
    env = {"PATH": f"{tool_bins}:{PATH}" if tool_bins else PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "CI": "true"}
    env.update(dict(job.env))
    return env


def plan_bwrap(bwrap: str, job: Job, limits: Limits, system: System) -> list[str]:
    """The whole bwrap command line for a job (pure)."""
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    if job.network:
        argv.append("--share-net")
    argv += ["--ro-bind", "/usr", "/usr"]
    for name, target in system.links:
        argv += ["--symlink", target, f"/{name}"]
    for name in system.folders:
        argv += ["--ro-bind", f"/{name}", f"/{name}"]
    argv += ["--dir", "/etc"]
    for name in system.etc:
        if name in _ETC_NETWORK and not job.network:
            continue
        argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for tool in job.tools:
        argv += ["--ro-bind", str(tool), str(tool)]
    argv += ["--bind", str(job.tree), INSIDE]
    for folder, relative in job.caches:
        argv += ["--bind", str(folder), inside_path(job, relative)]
    # The root (with /etc) is bwrap's own tmpfs: read-only too, so only the tree, the caches and /tmp take writes.
    argv += ["--remount-ro", "/", "--chdir", inside_path(job), "--hostname", "build"]
    for name, value in environment(job).items():
        argv += ["--setenv", name, value]
    return [*argv, "--", *limit_argv(limits), *job.command]


def plan_unconfined(job: Job, limits: Limits) -> list[str]:
    """DROPHOST_BUILD_SANDBOX=none: the same limits, no isolation (pure)."""
    return [*limit_argv(limits), *job.command]


def host_system() -> System:
    links, folders = [], []
    for name in _SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            links.append((name, os.readlink(path)))
        elif path.is_dir():
            folders.append(name)
    etc = tuple(name for name in (*_ETC_FILES, *_ETC_NETWORK) if os.path.lexists(f"/etc/{name}"))
    return System(links=tuple(links), folders=tuple(folders), etc=etc)


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    run_as: RunAs | None,
    on_line: Callable[[str], None],
    sandboxed: bool = False,
) -> None:
    """Run a planned build, handing each output line (stdout and stderr) to on_line as it comes.

    Raises BuildError when the command fails or runs past its timeout (then it and all it started
    are killed: its own session, and bwrap's pid namespace dies with it).

    `sandboxed`: `argv` is plan_bwrap's. This then returns only once every process of the sandbox
    is gone: bwrap exits as soon as the command does, and what the command left running dies a
    moment later, when the kernel takes down the pid namespace. Until then it could still write
    into the output (a file already hashed into the content store, under another file's digest).
    """
    info_read, info_write = os.pipe() if sandboxed else (-1, -1)
    if sandboxed:
        # bwrap writes the sandbox's first process (its pid 1) there once it started it.
        argv = [argv[0], "--info-fd", str(info_write), *argv[1:]]
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
            pass_fds=(info_write,) if sandboxed else (),
        )
    except OSError as exc:
        if sandboxed:
            os.close(info_read)
        raise BuildError(f"the build could not be started ({exc.strerror})") from None
    finally:
        if sandboxed:
            os.close(info_write)
    first = _sandbox_init(info_read) if sandboxed else None
    try:
        _run(process, timeout, on_line)
    finally:
        if first is not None:
            _wait_gone(first)


def _sandbox_init(info: int) -> int | None:
    """A pidfd of the sandbox's pid 1, from bwrap's --info-fd (closed by bwrap once it is written,
    or when bwrap fails before); None if bwrap never started one or it is already gone."""
    data = b""
    try:
        while chunk := os.read(info, 4096):
            data += chunk
    finally:
        os.close(info)
    try:
        pid = int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None
    try:
        # Opened while bwrap runs: its pid 1 is bwrap's child until then, so the pid is not reused.
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _wait_gone(pidfd: int) -> None:
    """Until the sandbox's pid 1 has exited: the kernel ends a pid namespace's other processes
    before its pid 1 exits, so then nothing of the build runs any more."""
    try:
        for grace in (_SANDBOX_END_SECONDS, _SANDBOX_END_SECONDS):
            if select.select([pidfd], [], [], grace)[0]:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        raise BuildError("a process of the build outlived it and could not be stopped")
    finally:
        os.close(pidfd)


def _run(process: subprocess.Popen[bytes], timeout: float, on_line: Callable[[str], None]) -> None:
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        _kill(process)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    assert process.stdout is not None
    try:
        while line := process.stdout.readline(_LINE_BYTES):
            on_line(line.decode("utf-8", "replace").rstrip("\n"))
        process.wait()
    except BaseException:
        _kill(process)
        process.wait()
        raise
    finally:
        timer.cancel()
        process.stdout.close()
    if timed_out.is_set():
        raise BuildError(f"the build ran past its timeout of {timeout:g}s and was stopped")
    if process.returncode != 0:
        code = process.returncode
        reason = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise BuildError(f"the build command {reason} after {time.monotonic() - started:.1f}s")


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def probe(bwrap: str, *, run_as: RunAs | None, system: System) -> str | None:
    """Why a sandbox cannot be made here (bwrap missing, user namespaces off), or None if it can."""
    job = Job(command=("/bin/true",), tree=Path("/tmp"), workdir="")
    argv = plan_bwrap(bwrap, job, Limits(10, 1 << 30, 64, 64, 1 << 20), system)
    lines: list[str] = []
    try:
        run(argv, cwd=Path("/"), env={"PATH": PATH}, timeout=30, run_as=run_as, on_line=lines.append, sandboxed=True)
    except BuildError as exc:
        detail = " ".join(lines)[-300:] or exc.message
        return f"bubblewrap ({bwrap}) cannot make a sandbox here: {detail}"
    return None

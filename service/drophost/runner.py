"""Every subprocess DropHost starts goes through here: argument lists, never a shell.

run() waits for a command (with a timeout, its output captured); watched() waits for one while a
check of the caller's runs every so often (a size cap on what it writes); stream() hands its output
over as it comes, so a caller holds one chunk at a time; spawn() streams a CGI's output; start()
leaves a long-running child (nginx) running for its caller to stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from drophost.errors import CommandError

log = logging.getLogger(__name__)


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    input_bytes: bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell); raise CommandError on failure or timeout.

    The command runs in its own process group, so a timeout stops everything it started (git's
    helpers, a shell's children), not only the command itself.
    """
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if input_bytes is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec_fn,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"{Path(argv[0]).name} could not be started", returncode=None, output=str(exc)) from None
    with process:
        try:
            stdout, stderr = process.communicate(input_bytes, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            # What it wrote before it was stopped says where it was stuck (unless something it
            # started left its group and still holds the pipe: then nothing is waited for).
            try:
                _, stderr = process.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                stderr = b""
            raise CommandError(
                f"{Path(argv[0]).name} timed out after {timeout:g}s", returncode=None, output=_text(stderr)
            ) from None
        except BaseException:
            _kill_group(process)
            raise
    result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        output = _text(result.stderr) or _text(result.stdout)
        log.debug("command %s failed (%s): %s", argv[0], result.returncode, output)
        raise CommandError(
            f"{Path(argv[0]).name} exited with status {result.returncode}",
            returncode=result.returncode,
            output=output,
        )
    return result


def watched(
    argv: list[str],
    *,
    watch: Callable[[], None],
    interval: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv as run() does, calling watch() every `interval` seconds while it runs.

    An exception from watch() kills the command and all it started (its own process group), then
    propagates: the caller's check decides, the runner only stops the work.
    """
    process = _popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=min(interval, max(deadline - time.monotonic(), 0.01)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise CommandError(
                        f"{Path(argv[0]).name} timed out after {timeout:g}s", returncode=None, output=""
                    ) from None
                watch()
    except BaseException:
        _kill_group(process)
        raise
    result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    if result.returncode != 0:
        output = _text(stderr) or _text(stdout)
        log.debug("command %s failed (%s): %s", argv[0], result.returncode, output)
        raise CommandError(
            f"{Path(argv[0]).name} exited with status {result.returncode}", returncode=result.returncode, output=output
        )
    return result


@contextlib.contextmanager
def stream(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    input_bytes: bytes | None = None,
) -> Iterator[IO[bytes]]:
    """Start argv and yield its stdout to read incrementally; memory is whatever the caller keeps.

    Past the timeout, or when the caller's block raises (a cap it enforces while reading), the
    command and all it started are killed at once. A block that ends normally waits for the command:
    a failure or a timeout raises CommandError as run() does. stderr goes to a temporary file, so a
    chatty command never blocks and never fills memory.
    """
    with tempfile.TemporaryFile() as errors:
        stdin = subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL
        process = _popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=errors)
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            _kill_group(process, wait=False)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        writer = _feed(process, input_bytes) if input_bytes is not None else None
        assert process.stdout is not None
        try:
            yield process.stdout
        except BaseException:
            _kill_group(process)
            raise
        else:
            process.stdout.close()
            process.wait()
        finally:
            timer.cancel()
            process.stdout.close()
            if writer is not None:
                writer.join()
        if timed_out.is_set():
            raise CommandError(f"{Path(argv[0]).name} timed out after {timeout:g}s", returncode=None, output="")
        if process.returncode != 0:
            errors.seek(0)
            output = _text(errors.read(64 * 1024))
            log.debug("command %s failed (%s): %s", argv[0], process.returncode, output)
            raise CommandError(
                f"{Path(argv[0]).name} exited with status {process.returncode}",
                returncode=process.returncode,
                output=output,
            )


def _popen(
    argv: list[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    stdin: int,
    stdout: int,
    stderr: int | IO[bytes],
) -> subprocess.Popen[bytes]:
    # Its own process group: git starts helpers (index-pack, remote-https, ssh) that must die with it.
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"{Path(argv[0]).name} could not be started", returncode=None, output=str(exc)) from None


def _feed(process: subprocess.Popen[bytes], data: bytes) -> threading.Thread:
    """Write stdin from a thread: a command answering as it reads would block a single thread."""
    assert process.stdin is not None
    stdin = process.stdin

    def write() -> None:
        with contextlib.suppress(OSError):  # the command stopped reading (killed at a cap)
            with stdin:
                stdin.write(data)

    thread = threading.Thread(target=write, name="runner-stdin", daemon=True)
    thread.start()
    return thread


def _kill_group(process: subprocess.Popen[bytes], *, wait: bool = True) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if wait:
        process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def spawn(
    argv: list[str], *, env: Mapping[str, str], stdin: IO[bytes], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start argv (never through a shell) with its output as a stream, for CGI (git http-backend).

    The caller reads stdout, enforces its own deadline and waits for the process.
    """
    try:
        return subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        raise CommandError(f"{Path(argv[0]).name} could not be started", returncode=None, output=str(exc)) from None


def start(
    argv: list[str],
    *,
    output: IO[bytes],
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running child (never through a shell): stdin closed, stdout and stderr appended
    to `output`, run from /. The caller watches it and stops it."""
    try:
        return subprocess.Popen(
            argv,
            cwd="/",
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            preexec_fn=preexec_fn,
        )
    except OSError as exc:
        raise CommandError(f"{Path(argv[0]).name} could not be started", returncode=None, output=str(exc)) from None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace").strip()
    return data.strip()

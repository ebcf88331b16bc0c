"""Every subprocess DropHost starts goes through here: argument lists, never a shell.

run() waits for a command (with a timeout, its output captured); spawn() streams a CGI's output;
start() leaves a long-running child (nginx) running for its caller to stop.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Mapping
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
    """Run argv (never through a shell); raise CommandError on failure or timeout."""
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            preexec_fn=preexec_fn,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            f"{Path(argv[0]).name} timed out after {timeout:g}s", returncode=None, output=_text(exc.stderr)
        ) from None
    except OSError as exc:
        raise CommandError(f"{Path(argv[0]).name} could not be started", returncode=None, output=str(exc)) from None
    if check and result.returncode != 0:
        output = _text(result.stderr) or _text(result.stdout)
        log.debug("command %s failed (%s): %s", argv[0], result.returncode, output)
        raise CommandError(
            f"{Path(argv[0]).name} exited with status {result.returncode}",
            returncode=result.returncode,
            output=output,
        )
    return result


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

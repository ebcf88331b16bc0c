"""A SIGHUP that arrives while `drophost up` starts: remembered, and applied once the service can.

SIGHUP means "apply deploy.yaml again". Before the service installs its own handler (PostgreSQL and
nginx starting, the app starting up) there is nothing to apply it with, and the default action would
kill `drophost up` and orphan its children. So `drophost up` installs `remember` first; the service
asks `take_pending()` once its handler is in place and applies the file then. While stopping,
SIGHUP is ignored: there is nothing to apply it to any more.
"""

from __future__ import annotations

import os
import sys
import threading

_pending = threading.Event()
_stopping = threading.Event()


def remember(signum: int, frame: object) -> None:
    """The SIGHUP handler of `drophost up` while the service has none of its own."""
    # os.write, not print: a signal handler must not re-enter a buffered stream that print may be using.
    if _stopping.is_set():
        os.write(sys.stdout.fileno(), b"drophost: SIGHUP ignored while stopping\n")
        return
    _pending.set()
    os.write(sys.stdout.fileno(), b"drophost: SIGHUP while starting: deploy.yaml is applied again once up\n")


def take_pending() -> bool:
    """Whether a SIGHUP came before the service could handle it (and forget it)."""
    was_set = _pending.is_set()
    _pending.clear()
    return was_set


def stopping() -> None:
    """From now on a SIGHUP is ignored (the service no longer handles it)."""
    _stopping.set()

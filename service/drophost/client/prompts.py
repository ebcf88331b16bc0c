"""Questions asked on a terminal before something is replaced or deleted; scripts without one are never asked."""

from __future__ import annotations

import sys
from typing import IO


def on_terminal(stdin: IO[str] | None = None) -> bool:
    """Whether a person can answer: stdin is a terminal."""
    stream = stdin or sys.stdin
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced
        return False


def ask(question: str, err: IO[str], stdin: IO[str] | None = None) -> str:
    """The answer typed on the terminal, stripped; the question goes to stderr, so stdout stays the result."""
    err.write(question)
    err.flush()
    line = (stdin or sys.stdin).readline()
    if not line:  # end of input (Ctrl-D)
        err.write("\n")
    return line.strip()


def confirm(question: str, err: IO[str], stdin: IO[str] | None = None) -> bool:
    """A yes/no question whose default is no."""
    return ask(f"{question} [y/N] ", err, stdin).lower() in ("y", "yes")

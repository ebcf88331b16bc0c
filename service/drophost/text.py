"""How untrusted text and sizes appear in messages: the one place the server and the CLI share."""

from __future__ import annotations


def show(text: str, limit: int = 120) -> str:
    """An untrusted name in quotes, clipped, with control characters escaped (never raw in a message)."""
    clipped = text if len(text) <= limit else text[: limit - 3] + "..."
    return '"' + (clipped if clipped.isprintable() else repr(clipped)[1:-1]) + '"'


def format_bytes(count: float, sep: str = " ") -> str:
    """1023 B, 1.0 KiB, 25.3 MiB: binary units, one decimal (`sep=""` for a progress bar's 1.0KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{sep}{unit}" if unit == "B" else f"{count:.1f}{sep}{unit}"
        count /= 1024
    return f"{count:.1f}{sep}GiB"

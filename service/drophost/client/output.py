"""How the CLI shows things: tables, times a person reads, slot names checked before asking the server."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from drophost.client.http import EXIT_USAGE, ClientError
from drophost.names import is_valid_slot

if TYPE_CHECKING:
    from datetime import datetime


def table(out: IO[str], header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def checked_slot(name: str) -> str:
    if not is_valid_slot(name):
        raise ClientError(f'"{name[:80]}" is not a valid slot name', EXIT_USAGE)
    return name


def human_time(iso: str | None, now: datetime | None = None) -> str:
    """An API time as a person reads it: "2026-12-07 14:03 UTC (3 min ago)", to the minute, with how long ago
    (or until: an expiry). The API's exact ISO time stays in --json."""
    if not iso:
        return "-"
    # Here: `drophost deploy` shows no times, and datetime's import was ~2 ms of its start.
    from datetime import UTC, datetime

    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M} UTC ({relative(at, now or datetime.now(UTC))})"


def relative(at: datetime, now: datetime) -> str:
    seconds = (now - at).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now" if seconds >= 0 else "in under a minute"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if span >= size * (2 if unit == "day" else 1):
            count = int(span // size)
            text = f"{count} {unit}s" if unit == "day" else f"{count} {unit}"
            return f"{text} ago" if seconds >= 0 else f"in {text}"
    raise AssertionError("unreachable")  # pragma: no cover


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

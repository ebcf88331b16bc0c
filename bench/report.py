"""Statistics and the one markdown table every benchmark prints."""

from __future__ import annotations

import os
import platform
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from drophost import runner
from drophost.errors import CommandError


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, both sides, and whether the goal was met."""

    measurement: str
    baseline: str
    drophost: str
    ratio: str
    goal: str
    met: bool | None  # None: reported, no goal


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), linearly interpolated between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be between 0 and 100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def mib(value: float) -> str:
    return f"{value / (1 << 20):.0f} MiB"


def render_table(rows: Sequence[Row]) -> str:
    header = ("measurement", "baseline", "DropHost", "ratio", "goal", "result")
    lines = [header] + [
        (
            r.measurement,
            r.baseline,
            r.drophost,
            r.ratio,
            r.goal,
            "" if r.met is None else ("PASS" if r.met else "MISS"),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |")
        if number == 0:
            out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(out)


def machine_summary() -> str:
    """One line about where the numbers come from (they mean little without it)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            found = re.search(r"^model name\s*:\s*(.+)$", handle.read(), re.M)
            cpu = found.group(1).strip() if found else ""
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as handle:
            found = re.search(r"^MemTotal:\s*(\d+) kB", handle.read(), re.M)
            memory = f"{int(found.group(1)) / (1 << 20):.0f} GiB RAM" if found else ""
    except OSError:
        pass
    load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    parts = [
        f"{os.cpu_count()} cores" + (f" ({cpu})" if cpu else ""),
        memory,
        f"Linux {platform.release()}",
        f"Python {platform.python_version()}",
        _version(["nginx", "-v"]),
        load,
    ]
    return ", ".join(p for p in parts if p)


def _version(argv: list[str]) -> str:
    try:
        result = runner.run(argv, timeout=10, check=False)
    except CommandError:
        return ""
    text: str = (result.stdout or result.stderr).decode(errors="replace").strip()
    return text.split(":", 1)[-1].strip().replace("/", " ")


def exit_on_sigterm() -> None:
    """A SIGTERM (e.g. from `timeout`) runs the benchmark's clean-up, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _exit_on_signal)


def print_report(rows: Sequence[Row], started: float) -> None:
    """The table, then the machine and how long the whole run took."""
    print(render_table(rows))
    print()
    print(f"Machine: {machine_summary()}. Whole run: {time.perf_counter() - started:.0f} s.")


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)

"""Bar and line charts for the Analytics tab, as geometry for inline SVG (pure; the template draws it)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from drophost.text import format_bytes

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 56, 28, 10
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f", "#be185d")


def colours_for(names: list[str]) -> dict[str, str]:
    """One colour per name: the palette while it lasts, then hues spread evenly round the wheel (never repeated)."""
    if len(names) <= len(PALETTE):
        return {name: PALETTE[i] for i, name in enumerate(names)}
    count = len(names)
    # Neighbours differ in lightness too, so close hues still tell apart.
    return {name: f"hsl({round(360 * i / count)}, 70%, {42 if i % 2 else 52}%)" for i, name in enumerate(names)}


def days_of(report: dict[str, Any]) -> list[date]:
    start = datetime.fromisoformat(report["from"]).date()
    end = datetime.fromisoformat(report["to"])
    last = (
        end.date() if (end.hour, end.minute, end.second, end.microsecond) != (0, 0, 0, 0) else end.date() - timedelta(1)
    )
    count = max(1, (last - start).days + 1)
    return [start + timedelta(days=i) for i in range(count)]


def daily_bars(report: dict[str, Any], metric: str) -> dict[str, Any]:
    """One stacked bar per day, one colour per slot."""
    days = days_of(report)
    slots = sorted({row["slot"] for row in report["per_day"]})
    colours = colours_for(slots)
    values: dict[tuple[str, str], int] = {(r["day"], r["slot"]): int(r[metric]) for r in report["per_day"]}
    totals = [sum(values.get((d.isoformat(), s), 0) for s in slots) for d in days]
    series = [[(s, values.get((d.isoformat(), s), 0)) for s in slots] for d in days]
    fmt = format_bytes if metric == "bytes" else (lambda v: str(int(v)))
    return _draw(days, series, max(totals, default=0), colours, fmt, metric)


def daily_errors(report: dict[str, Any]) -> dict[str, Any]:
    days = days_of(report)
    per_day: dict[str, list[int]] = {}
    for row in report["per_day"]:
        counts = per_day.setdefault(row["day"], [0, 0])
        counts[0] += int(row["status_4xx"])
        counts[1] += int(row["status_5xx"])
    series = [
        [("4xx", per_day.get(d.isoformat(), [0, 0])[0]), ("5xx", per_day.get(d.isoformat(), [0, 0])[1])] for d in days
    ]
    top = max((a + b for (_, a), (_, b) in series), default=0)
    return _draw(days, series, top, {"4xx": "#d97706", "5xx": "#dc2626"}, lambda v: str(int(v)), "errors")


def daily_lines(report: dict[str, Any], rows_key: str, metric: str) -> dict[str, Any]:
    """One line per slot through its value on each day (a day without a row is 0)."""
    days = days_of(report)
    rows = report[rows_key]
    slots = sorted({row["slot"] for row in rows})
    colours = colours_for(slots)
    values: dict[tuple[str, str], int] = {(r["day"], r["slot"]): int(r[metric]) for r in rows}
    top = max(values.values(), default=0)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / len(days)
    scale = top or 1
    lines = []
    for slot in slots:
        points = []
        for i, day in enumerate(days):
            value = values.get((day.isoformat(), slot), 0)
            x = round(LEFT + i * step + step / 2, 1)
            y = round(TOP + plot_h - plot_h * value / scale, 1)
            points.append({"x": x, "y": y, "title": f"{day.isoformat()} {slot}: {value} {metric}"})
        lines.append(
            {
                "slot": slot,
                "colour": colours[slot],
                "points": points,
                "path": " ".join(f"{p['x']},{p['y']}" for p in points),
            }
        )
    frame = _draw(days, [[] for _ in days], top, colours, lambda v: str(int(v)), metric)
    frame["lines"] = lines
    return frame


def _draw(
    days: list[date],
    series: list[list[tuple[str, int]]],
    top: int,
    colours: dict[str, str],
    fmt: Any,
    metric: str,
) -> dict[str, Any]:
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    scale = top or 1
    step = plot_w / len(days)
    bar_w = max(1.0, step * 0.7)
    bars = []
    for i, (day, parts) in enumerate(zip(days, series, strict=True)):
        x = LEFT + i * step + (step - bar_w) / 2
        y = float(TOP + plot_h)
        for name, value in parts:
            if value <= 0:
                continue
            h = plot_h * value / scale
            y -= h
            bars.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(bar_w, 1),
                    "h": round(h, 1),
                    "colour": colours[name],
                    "title": f"{day.isoformat()} {name}: {fmt(value)}",
                }
            )
    every = max(1, len(days) // 8)
    labels = [
        {"x": round(LEFT + i * step + step / 2, 1), "text": day.strftime("%m-%d")}
        for i, day in enumerate(days)
        if i % every == 0
    ]
    ticks: list[dict[str, Any]] = []
    for f in (0, 0.5, 1) if top else ():
        if fmt(top * f) not in [t["text"] for t in ticks]:  # a top of 1 would label 0.5 as 0 again
            ticks.append({"y": round(TOP + plot_h - plot_h * f, 1), "text": fmt(top * f)})
    return {
        "metric": metric,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "base": TOP + plot_h,
        "right": WIDTH - 8,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
        "legend": [{"name": name, "colour": colour} for name, colour in colours.items()],
        "lines": [],
        "empty": top == 0,
    }

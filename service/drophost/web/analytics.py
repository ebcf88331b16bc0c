"""The analytics report: deployments, requests per slot per day, bytes, top paths, 4xx and 5xx."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drophost.analytics.accesslog import Ingester
from drophost.errors import NotFoundError, ValidationError
from drophost.names import validate_slot
from drophost.store import accesslogs, deployments, slots
from drophost.store.rows import Conn
from drophost.web.common import pool_of

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime  # exclusive
    slot: str | None


def parse_moment(text: str, field: str, *, end_of_day: bool) -> datetime:
    """A date (YYYY-MM-DD: the whole day) or an ISO date-time; times without a zone are UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{field} must be a date like 2026-01-31 or an ISO date-time", field=field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_range(params: dict[str, str], *, now: datetime) -> Range:
    slot = params.get("slot") or None
    if slot is not None:
        validate_slot(slot)
    end = parse_moment(params["to"], "to", end_of_day=True) if params.get("to") else now
    if params.get("from"):
        start = parse_moment(params["from"], "from", end_of_day=False)
    else:
        start = datetime.combine((end - timedelta(days=DEFAULT_RANGE_DAYS)).date() + timedelta(days=1), time(), UTC)
    if start >= end:
        raise ValidationError("from must be before to", field="from")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise ValidationError(f"the range can be at most {MAX_RANGE_DAYS} days", field="from")
    return Range(start=start, end=end, slot=slot)


def report(conn: Conn, chosen: Range) -> dict[str, Any]:
    start, end, slot = chosen.start, chosen.end, chosen.slot
    per_day = accesslogs.requests_per_day(conn, start=start, end=end, slot=slot)
    return {
        "from": chosen.start.isoformat(),
        "to": chosen.end.isoformat(),
        "slot": chosen.slot,
        "deployments": accesslogs.deployment_counts(conn, start=start, end=end, slot=slot),
        "requests": accesslogs.request_totals(conn, start=start, end=end, slot=slot),
        "per_day": [{**row, "day": row["day"].isoformat()} for row in per_day],
        "top_paths": accesslogs.top_paths(conn, start=start, end=end, slot=slot),
    }


def build_report(request: Request, params: dict[str, str]) -> dict[str, Any]:
    """Read what nginx logged so far, then report (also used by the dashboard)."""
    chosen = parse_range(params, now=datetime.now(UTC))
    ingester: Ingester | None = getattr(request.app.state, "ingester", None)
    if ingester is not None:
        ingester.ingest()
    with pool_of(request).connection() as conn:
        return report(conn, chosen)


def build_page_report(request: Request, params: dict[str, str]) -> dict[str, Any]:
    """The dashboard's report: the API's, plus visitors per day and top paths split by status."""
    chosen = parse_range(params, now=datetime.now(UTC))
    if chosen.slot is not None:
        with pool_of(request).connection() as conn:
            known = slots.get_slot(conn, chosen.slot) is not None or deployments.count_deployments(
                conn, slot=chosen.slot
            )
        if not known:
            raise NotFoundError(f'there is no slot "{chosen.slot}"')
    result = build_report(request, params)
    start, end, slot = chosen.start, chosen.end, chosen.slot
    with pool_of(request).connection() as conn:
        visitors = accesslogs.visitors_per_day(conn, start=start, end=end, slot=slot)
        result["visitors_per_day"] = [{**row, "day": row["day"].isoformat()} for row in visitors]
        result["top_pages"] = accesslogs.top_paths_by_status(conn, start=start, end=end, slot=slot, not_found=False)
        result["top_404s"] = accesslogs.top_paths_by_status(conn, start=start, end=end, slot=slot, not_found=True)
    return result


async def get_analytics(request: Request) -> Response:
    """Figures over a range (?from=&to= as dates or date-times, default the last 7 days; ?slot=)."""
    params = {k: request.query_params[k] for k in ("slot", "from", "to") if k in request.query_params}
    result = await run_in_threadpool(build_report, request, params)
    return JSONResponse(result)

"""GET /api/outbox and the dashboard's Deliveries page: what the outbox sent, what it will try again,
what failed and why (never a token, never a destination's path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from drophost.errors import DrophostError, ValidationError
from drophost.names import validate_slot
from drophost.pipeline.feedback import host_of
from drophost.store import outbox
from drophost.store.rows import Row
from drophost.web.common import int_param, pool_of
from drophost.web.dashboard import render, signed_in

STATES = ("pending", "sent", "failed")


def routes() -> list[BaseRoute]:
    return [Route("/deliveries", deliveries_page, methods=["GET"])]


async def list_outbox(request: Request) -> Response:
    """Deliveries, newest first: ?state=pending|sent|failed ?slot= ?limit="""
    state, slot = _filters(request)
    limit = int_param(request, "limit", default=100, low=1, high=1000)
    return JSONResponse({"deliveries": await _load(request, state, slot, limit)})


@signed_in
async def deliveries_page(request: Request) -> Response:
    params = {name: request.query_params.get(name, "") for name in ("state", "slot")}
    try:
        state, slot = _filters(request)
    except DrophostError as exc:
        return render(
            request, "deliveries.html", exc.status_code, deliveries=[], params=params, states=STATES, error=exc.message
        )
    deliveries = await _load(request, state, slot, 200)
    return render(request, "deliveries.html", deliveries=deliveries, params=params, states=STATES, error="")


def _filters(request: Request) -> tuple[str | None, str | None]:
    state = request.query_params.get("state") or None
    if state is not None and state not in STATES:
        raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
    raw_slot = request.query_params.get("slot")
    return state, validate_slot(raw_slot) if raw_slot else None


async def _load(request: Request, state: str | None, slot: str | None, limit: int) -> list[dict[str, Any]]:
    def load() -> list[Row]:
        with pool_of(request).connection() as conn:
            return outbox.list_deliveries(conn, state=state, slot=slot, limit=limit)

    return [delivery_view(row) for row in await run_in_threadpool(load)]


def delivery_view(row: Row) -> dict[str, Any]:
    """A row as the API shows it: the destination's host only (a webhook URL's path is often its
    secret), no body, no variable names: nothing a token could hide in."""
    return {
        "id": row["id"],
        "idempotency_key": row["idempotency_key"],
        "kind": row["kind"],
        "target": row["target"],
        "host": host_of(row["url"]),
        "event": row["event"],
        "slot": row["slot"],
        "deployment_id": row["deployment_id"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "response_status": row["response_status"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["state"] == "pending" else None,
        "created_at": _iso(row["created_at"]),
        "sent_at": _iso(row["sent_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

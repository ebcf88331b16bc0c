"""The dashboard's Users, Tokens and Audit pages (the rest of the dashboard is dashboard.py)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from drophost import access
from drophost.access import Principal
from drophost.errors import DrophostError, UnauthorizedError
from drophost.store import audit
from drophost.web import auth, lists, sessions, team
from drophost.web.common import pool_of
from drophost.web.dashboard import render, signed_in

# The audit page reads this many of the newest matching entries (and says so when there are more).
AUDIT_ENTRIES = 1000
PER_PAGE = 50
_TOKEN_COLUMNS = (
    lists.Column("id", lambda r: r["id"]),
    lists.Column("user", lambda r: r["user"]),
    lists.Column("name", lambda r: r["name"]),
    lists.Column("expires", lambda r: r["expires_at"]),
    lists.Column("used", lambda r: r["last_used_at"]),
)
_USER_COLUMNS = (
    lists.Column("name", lambda r: r["name"]),
    lists.Column("role", lambda r: r["role"]),
    lists.Column("added", lambda r: r["created_at"]),
)
_AUDIT_COLUMNS = (
    lists.Column("id", lambda r: r["id"]),
    lists.Column("actor", lambda r: r["actor"]),
    lists.Column("action", lambda r: r["action"]),
    lists.Column("target", lambda r: r["target"]),
    lists.Column("result", lambda r: r["result"]),
)


def routes() -> list[BaseRoute]:
    return [
        Route("/tokens", tokens_page, methods=["GET"]),
        Route("/tokens", create_token, methods=["POST"]),
        Route("/tokens/{id}/revoke", revoke_token, methods=["POST"]),
        Route("/audit", audit_page, methods=["GET"]),
        Route("/users", users_page, methods=["GET"]),
        Route("/users", create_user, methods=["POST"]),
        Route("/users/{name}/remove", remove_user, methods=["POST"]),
    ]


@signed_in
async def tokens_page(request: Request) -> Response:
    return await _tokens(request)


@signed_in
async def create_token(request: Request) -> Response:
    """The form: a name, scopes separated by spaces, an optional expiry. The token is shown once."""
    principal = await _principal(request)
    form = request.state.form
    body: dict[str, Any] = {
        "name": form.get("name", ""),
        "scopes": form.get("scopes", "").split(),
        "expires": form.get("expires") or None,
    }
    request.state.principal = principal
    try:
        row, token = await run_in_threadpool(team.make_token, pool_of(request), principal, body)
    except DrophostError as exc:
        await run_in_threadpool(auth.record, request, "dashboard_create_token", f"{exc.status_code} {exc.message}")
        return await _tokens(request, error=exc.message, status_code=exc.status_code)
    request.state.audit_target = f"token {row['id']}"
    await run_in_threadpool(auth.record, request, "dashboard_create_token", "201")
    return await _tokens(request, new_token=token)


@signed_in
async def revoke_token(request: Request) -> Response:
    principal = await _principal(request)
    raw = request.path_params["id"]
    token_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 18 else 0
    request.state.principal = principal
    request.state.audit_target = f"token {token_id}"
    row = await run_in_threadpool(team.revoke, pool_of(request), principal, token_id)
    await run_in_threadpool(auth.record, request, "dashboard_revoke_token", "200" if row else "404")
    return await _tokens(request, error="" if row else f"There is no token {token_id} of yours.")


async def _tokens(request: Request, *, new_token: str = "", error: str = "", status_code: int = 200) -> Response:
    principal = await _principal(request)
    rows = await run_in_threadpool(team.visible_tokens, pool_of(request), principal)
    listing = lists.list_page(
        [team.token_view(r) for r in rows],
        dict(request.query_params),
        columns=_TOKEN_COLUMNS,
        searched=lambda r: " ".join([r["user"], r["name"], *r["scopes"]]),
        default_sort="id",
        default_descending=True,
        per_page=PER_PAGE,
        path="/tokens",
    )
    return render(
        request,
        "tokens.html",
        status_code,
        tokens=listing.rows,
        token_list=listing,
        new_token=new_token,
        error=error,
        user=principal.user,
        scopes=sorted(principal.scopes),
    )


@signed_in
async def audit_page(request: Request) -> Response:
    def listed(entries: list[dict[str, Any]]) -> lists.Listing:
        return lists.list_page(
            entries,
            dict(request.query_params),
            columns=_AUDIT_COLUMNS,
            searched=lambda r: " ".join(str(r[k] or "") for k in ("actor", "address", "action", "target", "result")),
            default_sort="id",
            default_descending=True,
            per_page=PER_PAGE,
            path="/audit",
        )

    try:
        filters = team.entry_filters(request.query_params)
    except DrophostError as exc:
        return render(
            request,
            "audit.html",
            exc.status_code,
            entries=[],
            entry_list=listed([]),
            capped=None,
            params={},
            error=exc.message,
        )

    def load() -> list[dict[str, Any]]:
        with pool_of(request).connection() as conn:
            return [team.entry_view(r) for r in audit.list_entries(conn, **filters, limit=AUDIT_ENTRIES)]

    params = {k: request.query_params.get(k, "") for k in ("actor", "action", "target", "since")}
    entries = await run_in_threadpool(load)
    listing = listed(entries)
    return render(
        request,
        "audit.html",
        entries=listing.rows,
        entry_list=listing,
        capped=AUDIT_ENTRIES if len(entries) == AUDIT_ENTRIES else None,
        params=params,
        error="",
    )


@signed_in
async def users_page(request: Request) -> Response:
    return await _users(request)


@signed_in
async def create_user(request: Request) -> Response:
    """The form: a name, a role, slot patterns separated by spaces or commas (deployers), a password."""
    form = request.state.form
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "role": form.get("role", ""),
        "slots": form.get("slots", "").replace(",", " ").split(),
        "password": form.get("password", ""),
    }
    refused = await _refuse_non_admin(request, "dashboard_create_user", f"user {body['name']}")
    if refused is not None:
        return refused
    try:
        row = await run_in_threadpool(team.add_user, pool_of(request), body)
    except DrophostError as exc:
        await run_in_threadpool(auth.record, request, "dashboard_create_user", f"{exc.status_code} {exc.message}")
        return await _users(request, error=exc.message, status_code=exc.status_code)
    await run_in_threadpool(auth.record, request, "dashboard_create_user", "201")
    return await _users(request, notice=f"Added {row['role']} {row['name']}.")


@signed_in
async def remove_user(request: Request) -> Response:
    name = request.path_params["name"]
    refused = await _refuse_non_admin(request, "dashboard_remove_user", f"user {name}")
    if refused is not None:
        return refused
    try:
        name = access.check_user_name(name)
    except DrophostError as exc:
        return await _users(request, error=exc.message, status_code=exc.status_code)
    removed = await run_in_threadpool(team.remove_user, pool_of(request), name)
    await run_in_threadpool(auth.record, request, "dashboard_remove_user", "200" if removed else "404")
    if not removed:
        return await _users(request, error=f'There is no user "{name}".', status_code=404)
    return await _users(request, notice=f"Removed {name} and their tokens.")


async def _refuse_non_admin(request: Request, action: str, target: str) -> Response | None:
    """Users are an admin's business: anyone else gets 403, and the attempt is audited."""
    principal = await _principal(request)
    request.state.principal = principal
    request.state.audit_target = target
    if "admin" in principal.scopes:
        return None
    if request.method != "GET":
        await run_in_threadpool(auth.record, request, action, "403 not an admin")
    return render(request, "error.html", 403, message="Only an admin manages users.")


async def _users(request: Request, *, notice: str = "", error: str = "", status_code: int = 200) -> Response:
    refused = await _refuse_non_admin(request, "", "users")
    if refused is not None:
        return refused
    rows = await run_in_threadpool(team.all_users, pool_of(request))
    listing = lists.list_page(
        [team.user_view(r) for r in rows],
        dict(request.query_params),
        columns=_USER_COLUMNS,
        searched=lambda r: " ".join([r["name"], r["role"], *r["slots"]]),
        default_sort="name",
        per_page=PER_PAGE,
        path="/users",
    )
    return render(
        request,
        "users.html",
        status_code,
        users=listing.rows,
        user_list=listing,
        roles=access.ROLES,
        notice=notice,
        error=error,
    )


async def _principal(request: Request) -> Principal:
    session = sessions.current(request)
    assert session is not None  # signed_in let the request through
    principal = await run_in_threadpool(auth.principal_for_session, pool_of(request), session)
    if principal is None:  # the user was removed while signed in
        raise UnauthorizedError("your user no longer exists; sign in again")
    return principal

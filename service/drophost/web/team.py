"""JSON handlers for the team: users (admins), API tokens (everyone's own), the audit log, deploy locks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drophost import access
from drophost.errors import ForbiddenError, NotFoundError, ValidationError
from drophost.names import validate_slot
from drophost.store import audit, users
from drophost.store.rows import Row
from drophost.web.auth import principal_of
from drophost.web.common import id_param, int_param, path_slot, pool_of, read_json


# -- the caller -------------------------------------------------------------------------------------
async def whoami(request: Request) -> Response:
    """Who this request was made as: the user, their role, the scopes in force, and how they were recognised."""
    principal = principal_of(request)
    if "authorization" not in request.headers:
        via = "session"
    elif principal.token_id is None:
        via = "bootstrap token"  # DROPHOST_API_TOKEN of the server
    else:
        via = "token"
    return JSONResponse(
        {
            "user": principal.user,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
            "token_id": principal.token_id,
            "via": via,
        }
    )


# -- users ------------------------------------------------------------------------------------------
async def create_user(request: Request) -> Response:
    """{"name", "role", "slots": [patterns], "password"} -> 201 the user (never the password)."""
    body = await read_json(request)
    request.state.audit_target = f"user {access.check_user_name(body.get('name'))}"
    return JSONResponse(user_view(await run_in_threadpool(add_user, pool_of(request), body)), status_code=201)


def add_user(pool: ConnectionPool[Any], body: dict[str, Any]) -> Row:
    """Check and store a new user (the API's and the dashboard's form); scrypt runs here, in a thread."""
    name = access.check_user_name(body.get("name"))
    role = access.check_role(body.get("role"))
    patterns = check_patterns(body.get("slots", []), role)
    password = body.get("password")
    if not isinstance(password, str):
        raise ValidationError("password is required", field="password")
    hashed = access.hash_password(password)
    with pool.connection() as conn:
        return users.add_user(conn, name=name, role=role, slots=patterns, password_hash=hashed)


async def list_users(request: Request) -> Response:
    return JSONResponse({"users": [user_view(r) for r in await run_in_threadpool(all_users, pool_of(request))]})


async def delete_user(request: Request) -> Response:
    """Remove a user; their tokens stop working at once (they go with the user)."""
    name = access.check_user_name(request.path_params["name"])
    request.state.audit_target = f"user {name}"

    if not await run_in_threadpool(remove_user, pool_of(request), name):
        raise NotFoundError(f'there is no user "{name}"')
    return JSONResponse({"name": name, "deleted": True})


def remove_user(pool: ConnectionPool[Any], name: str) -> bool:
    with pool.connection() as conn:
        return users.delete_user(conn, name)


def all_users(pool: ConnectionPool[Any]) -> list[Row]:
    with pool.connection() as conn:
        return users.list_users(conn)


def check_patterns(raw: object, role: str) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValidationError('slots must be a list of patterns like ["docs-*"]', field="slots")
    patterns = [access.check_pattern(p) for p in raw]
    if patterns and role != "deployer":
        raise ValidationError("only a deployer has slot patterns (an admin has every slot, a viewer none)")
    return patterns


def user_view(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "role": row["role"],
        "slots": list(row["slots"]),
        "created_at": _iso(row["created_at"]),
    }


# -- tokens -----------------------------------------------------------------------------------------
async def create_token(request: Request) -> Response:
    """{"name", "scopes", "expires"?, "user"? (admins)} -> 201 {id, token}: the token is shown only now."""
    body = await read_json(request)
    row, token = await run_in_threadpool(make_token, pool_of(request), principal_of(request), body)
    request.state.audit_target = f"token {row['id']}"
    return JSONResponse({**token_view(row), "token": token}, status_code=201)


def make_token(pool: ConnectionPool[Any], principal: access.Principal, body: dict[str, Any]) -> tuple[Row, str]:
    """A new token of `principal` (or, for an admin, of body["user"]): its row and the token itself."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
        raise ValidationError("name is required: up to 100 printable characters", field="name")
    owner = body.get("user", principal.user)
    if owner != principal.user and "admin" not in principal.scopes:
        raise ForbiddenError("only an admin makes tokens for someone else", field="user")
    if owner == access.BOOTSTRAP.user:
        raise ValidationError('the bootstrap token has no user to own tokens; add one with "user"', field="user")
    owner = access.check_user_name(owner)
    seconds = access.parse_expiry(body.get("expires"))
    expires_at = datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None
    token = access.new_token()
    with pool.connection() as conn, conn.transaction():
        user = users.get_user(conn, owner)
        if user is None:
            raise NotFoundError(f'there is no user "{owner}"', field="user")
        rights = access.role_scopes(user["role"], user["slots"])
        if owner == principal.user and principal.token_id is not None:
            rights = principal.scopes  # a token makes tokens no wider than itself
        scopes = access.check_scopes(body.get("scopes"), rights)
        row = users.add_token(
            conn,
            user=owner,
            name=name.strip(),
            digest=access.token_digest(token),
            scopes=sorted(scopes),
            expires_at=expires_at,
        )
    return row, token


def visible_tokens(pool: ConnectionPool[Any], principal: access.Principal) -> list[Row]:
    with pool.connection() as conn:
        return users.list_tokens(conn, None if "admin" in principal.scopes else principal.user)


def revoke(pool: ConnectionPool[Any], principal: access.Principal, token_id: int) -> Row | None:
    """Revoke one of the principal's tokens (an admin: anyone's); None if there is no such token."""
    with pool.connection() as conn:
        row = users.get_token(conn, token_id)
        if row is None or (row["user_name"] != principal.user and "admin" not in principal.scopes):
            return None
        users.revoke_token(conn, token_id)
        return users.get_token(conn, token_id)


async def list_tokens(request: Request) -> Response:
    """Your tokens (an admin: everyone's), with their last use; never the tokens themselves."""
    rows = await run_in_threadpool(visible_tokens, pool_of(request), principal_of(request))
    return JSONResponse({"tokens": [token_view(r) for r in rows]})


async def revoke_token(request: Request) -> Response:
    """Revoke a token: the next request with it gets 401."""
    token_id = id_param(request, "id")
    request.state.audit_target = f"token {token_id}"
    row = await run_in_threadpool(revoke, pool_of(request), principal_of(request), token_id)
    if row is None:
        raise NotFoundError(f"there is no token {token_id} of yours")
    return JSONResponse(token_view(row))


def token_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "user": row["user_name"],
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "expires_at": _iso(row["expires_at"]),
        "created_at": _iso(row["created_at"]),
        "last_used_at": _iso(row["last_used_at"]),
        "revoked_at": _iso(row["revoked_at"]),
    }


# -- audit log --------------------------------------------------------------------------------------
async def list_audit(request: Request) -> Response:
    """The audit log, newest first: ?actor= ?action= ?target= ?since= (ISO date-time) ?limit="""
    filters = entry_filters(request.query_params)
    limit = int_param(request, "limit", default=100, low=1, high=1000)

    def load() -> list[Row]:
        with pool_of(request).connection() as conn:
            return audit.list_entries(conn, **filters, limit=limit)

    return JSONResponse({"entries": [entry_view(r) for r in await run_in_threadpool(load)]})


def entry_filters(params: Any) -> dict[str, Any]:
    since = None
    if params.get("since"):
        try:
            since = datetime.fromisoformat(params["since"])
        except ValueError:
            raise ValidationError("since must be an ISO date or date-time", field="since") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return {
        "actor": params.get("actor") or None,
        "action": params.get("action") or None,
        "target": params.get("target") or None,
        "since": since,
    }


def entry_view(row: Row) -> dict[str, Any]:
    return {**row, "at": _iso(row["at"])}


# -- deploy locks -----------------------------------------------------------------------------------
async def lock_slot(request: Request) -> Response:
    """{"reason"}: pushes to the slot are still built but none goes live until it is unlocked."""
    slot = path_slot(request)
    body = await read_json(request)
    reason = body.get("reason") or "locked"
    if not isinstance(reason, str) or len(reason) > 500 or not reason.isprintable():
        raise ValidationError("reason must be up to 500 printable characters", field="reason")
    by = principal_of(request).actor

    def lock() -> Row | None:
        with pool_of(request).connection() as conn:
            audit.lock_slot(conn, slot, reason, by)
            return audit.slot_lock(conn, slot)

    row = await run_in_threadpool(lock)
    assert row is not None
    return JSONResponse(lock_view(slot, row))


async def unlock_slot(request: Request) -> Response:
    slot = path_slot(request)

    def unlock() -> bool:
        with pool_of(request).connection() as conn:
            return audit.unlock_slot(conn, slot)

    was_locked = await run_in_threadpool(unlock)
    return JSONResponse({"slot": slot, "locked": False, "was_locked": was_locked})


def lock_view(slot: str, row: Row | None) -> dict[str, Any]:
    if row is None:
        return {"slot": validate_slot(slot), "locked": False}
    return {
        "slot": slot,
        "locked": True,
        "reason": row["reason"],
        "locked_by": row["locked_by"],
        "locked_at": _iso(row["locked_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

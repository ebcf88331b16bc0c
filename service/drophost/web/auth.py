"""The one place that decides who may call a route, and that records every change made through it.

Each route in web/routes.py declares what it needs (`read`, `deploy`, `admin`, or `public`,
`webhook` and `basic`, which check their own signature or password). The guard finds the caller
(the bootstrap token, a user's API token, or a dashboard session with its CSRF header): none, 401;
not allowed, 403. `deploy` is checked against the slot in the path here; a route whose slot is in
the body calls `authorize_slot` once it has read it. Every call that is not a GET is written to the
audit log with its result, refused ones included.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from drophost import access
from drophost.access import BOOTSTRAP, Principal
from drophost.errors import DrophostError, ForbiddenError, TooManyRequestsError, UnauthorizedError
from drophost.names import validate_slot
from drophost.settings import Settings
from drophost.store import audit, users
from drophost.web import sessions
from drophost.web.common import Handler, pool_of, settings_of

log = logging.getLogger(__name__)
Auth = Literal["public", "webhook", "basic", "read", "deploy", "admin"]
_CHECKED_HERE = ("read", "deploy", "admin")


def guard(handler: Handler, need: Auth) -> Handler:
    """The handler behind the check its route declares."""
    if need not in _CHECKED_HERE:
        return handler

    async def guarded(request: Request) -> Response:
        principal = await run_in_threadpool(authenticate, request)
        raw_slot = request.path_params.get("slot")
        slot = validate_slot(raw_slot) if isinstance(raw_slot, str) else None
        request.state.audit_target = slot
        if principal is None:
            if "authorization" not in request.headers:
                raise UnauthorizedError("this endpoint needs an Authorization: Bearer <token> header")
            raise UnauthorizedError("the API token is not valid")
        request.state.principal = principal
        try:
            if not access.permits(principal.scopes, need, slot):
                where = f' on slot "{slot}"' if need == "deploy" and slot else ""
                raise ForbiddenError(f"{principal.user} has no {need} right{where}")
            response = await handler(request)
        except DrophostError as exc:
            if request.method != "GET":
                await run_in_threadpool(record, request, _action(request, handler), f"{exc.status_code} {exc.message}")
            raise
        if request.method != "GET":
            await run_in_threadpool(record, request, _action(request, handler), str(response.status_code))
        return response

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def _action(request: Request, handler: Handler) -> str:
    """The handler's name, unless it named the act itself (DELETE /api/slots/{slot}: offline, or delete for good)."""
    named = getattr(request.state, "audit_action", None)
    return named if isinstance(named, str) else handler.__name__


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def authorize_slot(request: Request, slot: str) -> None:
    """For routes whose slot is in the body: the caller must have deploy rights on it."""
    request.state.audit_target = slot
    principal = principal_of(request)
    if not access.permits(principal.scopes, "deploy", slot):
        raise ForbiddenError(f'{principal.user} has no deploy right on slot "{slot}"')


def authenticate(request: Request) -> Principal | None:
    """The caller of an API request, or None. Runs in a thread: it may query PostgreSQL."""
    pool = pool_of(request)
    if "authorization" not in request.headers:
        session = sessions.current(request)
        if session is None or not sessions.csrf_ok(request, session, request.headers.get(sessions.CSRF_HEADER)):
            return None
        return principal_for_session(pool, session)
    scheme, _, given = request.headers["authorization"].partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return principal_for_token(pool, settings_of(request), given.strip())


def principal_for_token(pool: ConnectionPool[Any], settings: Settings, given: str) -> Principal | None:
    if access.same_secret(given, settings.api_token):
        return BOOTSTRAP
    if not given.startswith(access.TOKEN_PREFIX):
        return None
    # A lookup by sha256 of a 256-bit random token: its timing tells nothing about any stored token.
    with pool.connection() as conn:
        row = users.token_by_digest(conn, access.token_digest(given))
    if row is None:
        return None
    # A token never exceeds its user's rights as they are now (a user may have been given a smaller role).
    rights = access.role_scopes(row["role"], row["slots"])
    scopes = frozenset(s for s in row["scopes"] if access.scope_within(s, rights))
    return Principal(user=row["user_name"], role=row["role"], scopes=scopes, token_id=int(row["id"]))


def principal_for_session(pool: ConnectionPool[Any], session: sessions.Session) -> Principal | None:
    if not session.user:
        return BOOTSTRAP
    with pool.connection() as conn:
        row = users.get_user(conn, session.user)
    if row is None:  # removed since signing in
        return None
    return Principal(user=row["name"], role=row["role"], scopes=access.role_scopes(row["role"], row["slots"]))


# -- sign-in: rate limit and failures ----------------------------------------------------------------
def limit_signin(request: Request, name: str | None) -> None:
    """429 while this address or this user name has too many recent failures."""
    wait = _limiter(request).wait_for(_signin_keys(request, name))
    if wait > 0:
        seconds = math.ceil(wait)
        raise TooManyRequestsError(
            f"too many failed sign-ins from this address or for this user name; try again in {seconds} seconds",
            retry_after=seconds,
        )


def signin_failed(request: Request, name: str | None, how: str) -> None:
    _limiter(request).failed(_signin_keys(request, name))
    record(request, "signin", f"401 {how}", actor=name or "anonymous", target=name)


def _limiter(request: Request) -> access.FailureLimiter:
    limiter: access.FailureLimiter = request.app.state.signin_limiter
    return limiter


def _signin_keys(request: Request, name: str | None) -> list[str]:
    return [f"address {client_address(request)}", *([f"user {name}"] if name else [])]


def client_address(request: Request) -> str | None:
    """The address nginx saw (the last X-Forwarded-For entry, which nginx itself added), else the peer's."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded and (peer is None or peer in ("127.0.0.1", "::1", "testclient")):
        return forwarded.rsplit(",", 1)[-1].strip()[:100] or peer
    return peer


def record(request: Request, action: str, result: str, *, actor: str | None = None, target: str | None = None) -> None:
    """One audit row; a failure to write it is logged, never turned into the request's failure."""
    principal = getattr(request.state, "principal", None)
    who = actor or (principal.actor if isinstance(principal, Principal) else "anonymous")
    try:
        with pool_of(request).connection() as conn:
            audit.record(
                conn,
                actor=who,
                action=action,
                target=target or getattr(request.state, "audit_target", None),
                result=result,
                address=client_address(request),
            )
    except Exception:
        log.exception("could not write the audit log entry for %s", action)

"""Dashboard sessions: a signed, HttpOnly, SameSite=Strict cookie, and CSRF tokens (stdlib hmac).

The cookie holds {"exp", "csrf", "user"} signed with a key derived from the API token, so changing the
token signs everyone out. The CSRF token sits in the session and in the pages; a mutating form
or an API call made with the cookie must carry it (form field `csrf` or header X-CSRF-Token).
Another origin (a tenant site on the sites port) can neither read the pages nor send that header.

Not itsdangerous (what Starlette's SessionMiddleware signs with): the signing here is a dozen lines
of hmac/sha256 with the expiry inside the signed payload; itsdangerous would save about ten of them
for a new dependency, a cookie format change (everyone signed out once) and a slower verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "drophost_session"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: int
    user: str = ""  # "": signed in with the bootstrap token (cookies from before users had none)


def signing_key(api_token: str) -> bytes:
    return hmac.new(api_token.encode(), b"drophost dashboard session v1", hashlib.sha256).digest()


def encode(key: bytes, session: Session) -> str:
    payload = _b64(
        json.dumps({"exp": session.expires, "csrf": session.csrf, "user": session.user}, separators=(",", ":")).encode()
    )
    signature = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def decode(key: bytes, value: str, *, now: float | None = None) -> Session | None:
    """The session in a cookie value, or None if it is forged, malformed or expired."""
    payload, _, signature = value.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        session = Session(csrf=str(data["csrf"]), expires=int(data["exp"]), user=str(data.get("user", "")))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > (time.time() if now is None else now) else None


def new_session(max_age: int, user: str = "") -> Session:
    return Session(csrf=secrets.token_urlsafe(32), expires=int(time.time()) + max_age, user=user)


def current(request: Request) -> Session | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    return decode(signing_key(request.app.state.settings.api_token), value)


def same_origin(request: Request) -> bool:
    """A browser's Origin header (when sent) must be this very origin: scheme, host and port."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    return origin == f"{scheme}://{request.headers.get('host', '')}"


def csrf_ok(request: Request, session: Session, given: str | None) -> bool:
    return bool(given) and same_origin(request) and hmac.compare_digest(str(given).encode(), session.csrf.encode())


def api_session_ok(request: Request) -> bool:
    """An /api/ call from the dashboard's own JavaScript: the cookie plus the CSRF header."""
    session = current(request)
    return session is not None and csrf_ok(request, session, request.headers.get(CSRF_HEADER))


def set_cookie(request: Request, response: Response, session: Session, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        encode(signing_key(request.app.state.settings.api_token), session),
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=(request.headers.get("x-forwarded-proto") or request.url.scheme) == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

"""urllib's redirects, without taking the API token to another server.

urllib's HTTPRedirectHandler copies every header of a request to the one it redirects to, the
Authorization header too, whatever the new URL's host. Like curl and requests, the token is dropped
once the scheme, host or port change. Imported only when urllib is (client/http.py), for its cost.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request
from http.client import HTTPMessage
from typing import IO

_DEFAULT_PORTS = {"http": 80, "https": 443}


class SameOriginAuthorization(urllib.request.HTTPRedirectHandler):
    """Follows what urllib follows; the Authorization header only to the same scheme, host and port."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        followed = super().redirect_request(req, fp, code, msg, headers, newurl)
        where = origin(followed.full_url) if followed is not None else None
        if followed is not None and (where is None or where != origin(req.full_url)):
            followed.remove_header("Authorization")
        return followed


def origin(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port (the scheme's own when none is written); None when the port is not one (pure)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


@functools.cache
def opener() -> urllib.request.OpenerDirector:
    """urllib's default opener (what urlopen uses) with the redirect handler above in place of its own."""
    return urllib.request.build_opener(SameOriginAuthorization)

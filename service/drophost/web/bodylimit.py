"""The one request-body cap: a route declares it, a handler may lower it, and going past it is a JSON 413.

Not Starlette's `max_body_size`: that one answers a too-large Content-Length in plain text with a
413 of its own, replacing whatever the application sends. Here the excess raises a TooLargeError
inside the handler's read, so the application's one error handler renders it like any other error.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from drophost.errors import TooLargeError

JSON_MAX_BYTES = 64 * 1024  # a JSON body of a few fields
_SCOPE_KEY = "drophost.body_limit"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        budget = _Budget(self.max_bytes, _content_length(scope))
        scope[_SCOPE_KEY] = budget

        async def limited_receive() -> Message:
            budget.check(0)
            message = await receive()
            if message["type"] == "http.request":
                budget.check(len(message.get("body", b"")))
            return message

        await self.app(scope, limited_receive, send)


def lower_body_limit(request: Request, max_bytes: int) -> None:
    """A smaller cap for this request, e.g. for one content type of a route that also takes large uploads."""
    budget: _Budget = request.scope[_SCOPE_KEY]  # KeyError: the route declares no cap to lower
    budget.max_bytes = min(budget.max_bytes, max_bytes)


class _Budget:
    def __init__(self, max_bytes: int, declared: int | None) -> None:
        self.max_bytes = max_bytes
        self.declared = declared
        self.received = 0

    def check(self, more: int) -> None:
        self.received += more
        if self.received > self.max_bytes or (self.declared is not None and self.declared > self.max_bytes):
            raise TooLargeError(f"the request body is larger than the limit of {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

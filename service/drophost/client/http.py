"""A small HTTP client for the DropHost API (standard library only), used by the CLI.

A plain http:// server without a proxy is spoken to over a socket of our own (client/wire.py):
urllib.request imports http.client, email and ssl, about a third of what a `drophost deploy` of one
changed file costs. https://, a proxy, a redirect and the streamed build log go through urllib
as they always did; the answers, errors and messages are the same either way.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from drophost.client import wire

if TYPE_CHECKING:
    import urllib.error
    import urllib.request

Progress = Callable[[int, int], None]

# Exit codes of the CLI; ClientError carries one.
EXIT_OK = 0
EXIT_FAILED = 1  # the server could not do it (5xx, or a deploy that failed)
EXIT_USAGE = 2  # bad arguments or local input (argparse uses 2 too)
EXIT_UNREACHABLE = 3  # no answer from the server
EXIT_AUTH = 4  # token missing or wrong (401, 403)
EXIT_NOT_FOUND = 5  # no such slot, deployment or version (404)
EXIT_REJECTED = 6  # the server refused the input (400, 409, 413, 415, 422)


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if 400 <= status < 500:
        return EXIT_REJECTED
    return EXIT_FAILED


API_MARKER = "X-Drophost-Api"
NGINX_OWN_ANSWERS = (413, 500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)  # what urllib's redirect handler follows; any other 3xx is refused
DEFAULT_TIMEOUT = 30.0
# An upload's answer comes once the server has unpacked, published and switched: it may take minutes.
UPLOAD_TIMEOUT = 600.0


class ApiClient:
    def __init__(
        self, server: str, token: str, *, timeout: float = DEFAULT_TIMEOUT, upload_timeout: float = UPLOAD_TIMEOUT
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.upload_timeout = max(upload_timeout, timeout)
        self.token_source = "--token"  # shown when the server refuses the token; never the token
        self._described: bool | None = None
        self._address = wire.address_of(self.server) if sys.platform not in ("darwin", "win32") else None

    def get(self, path: str, **query: Any) -> Any:
        shown = {k: v for k, v in query.items() if v is not None}
        suffix = "?" + urllib.parse.urlencode(shown) if shown else ""
        return self.request("GET", path + suffix)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, long: bool = False) -> Any:
        """A JSON call; `long` for one whose answer waits for a deploy (finalize), with the upload timeout."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self._call(method, path, data, headers, self.upload_timeout if long else self.timeout)

    def post_bytes(self, path: str, data: bytes, content_type: str) -> Any:
        return self._call("POST", path, data, {"Content-Type": content_type}, self.timeout)

    def upload(self, archive: IO[bytes], filename: str, fields: dict[str, str], progress: Progress | None) -> Any:
        """POST /api/deployments as multipart/form-data, streamed from `archive`."""
        boundary = "drophost-" + os.urandom(16).hex()  # secrets.token_hex, without importing secrets
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        archive.seek(0, os.SEEK_END)
        size = archive.tell()
        archive.seek(0)
        total = len(head) + size + len(tail)

        def chunks() -> Iterator[bytes]:
            sent = 0
            for piece in _pieces(head, archive, tail):
                sent += len(piece)
                if progress is not None:
                    progress(sent, total)
                yield piece

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(total)}
        return self._call("POST", "/api/deployments", chunks(), headers, self.upload_timeout)

    def put_file(self, path: str, handle: IO[bytes], size: int) -> Any:
        """PUT raw bytes streamed from an open file (digest uploads)."""
        return self._send_bytes("PUT", path, handle, size)

    def post_stream(self, path: str, chunks: Iterable[bytes], size: int) -> Any:
        """POST a body of exactly `size` bytes, produced piece by piece (digest batches)."""
        return self._send_bytes("POST", path, chunks, size)

    def _send_bytes(self, method: str, path: str, body: IO[bytes] | Iterable[bytes], size: int) -> Any:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return self._call(method, path, body, headers, self.upload_timeout)

    def _call(self, method: str, path: str, data: wire.Body, headers: dict[str, str], timeout: float) -> Any:
        """One request: over our own socket when urllib would connect straight to a plain http:// server."""
        if self._address is None or wire.http_proxy_set(os.environ):
            import urllib.request

            request = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
            return self._send(request, timeout)
        sent = {**headers, "Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            answer = wire.exchange(self._address, method, path, sent, data, timeout)
        except wire.SendError as exc:
            # urllib reports what broke while connecting or sending as the reason of a URLError.
            raise ClientError(f"cannot reach {self.server}: {exc.reason}", EXIT_UNREACHABLE) from None
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(exc, timeout) from None
        if 200 <= answer.status < 300:
            self._check_marker(answer.header(API_MARKER), answer.status)
            return _decode(answer.body)
        if answer.status in REDIRECTS:
            return self._redirected(method, path, sent, answer, timeout)
        raise self._refusal(answer.status, answer.header(API_MARKER), answer.body)

    def _redirected(self, method: str, path: str, headers: dict[str, str], answer: wire.Answer, timeout: float) -> Any:
        """What urllib does with a 3xx answer: a GET or HEAD follows it, a POST answered 301 to 303
        follows it as a GET without the body, anything else is refused with that status."""
        import http.client
        import io
        import urllib.error
        import urllib.request

        from drophost.client import redirects

        request = urllib.request.Request(self.server + path, method=method, headers=headers)
        request.timeout = timeout
        message = http.client.parse_headers(io.BytesIO(answer.head))
        handler = redirects.SameOriginAuthorization()
        handler.add_parent(redirects.opener())
        with self._urllib_errors(timeout):
            followed = handler.http_error_302(request, io.BytesIO(answer.body), answer.status, answer.reason, message)
            if followed is None:  # a 3xx without a place to go: urllib's default handler refuses it
                raise urllib.error.HTTPError(
                    request.full_url, answer.status, answer.reason, message, io.BytesIO(answer.body)
                )
            with followed as response:
                body = response.read()
                self._check_marker(response.headers.get(API_MARKER), response.status)
                return _decode(body)

    def stream(self, path: str) -> Iterator[bytes]:
        """A text answer's bytes as they come (a followed build log: a build may be quiet for minutes)."""
        import urllib.error
        import urllib.request

        from drophost.client import redirects

        request = urllib.request.Request(self.server + path, method="GET")
        request.add_header("Authorization", f"Bearer {self.token}")
        timeout = self.upload_timeout
        with self._urllib_errors(timeout):
            with redirects.opener().open(request, timeout=timeout) as response:  # http(s) only
                self._check_marker(response.headers.get(API_MARKER), response.status)
                while chunk := response.read1(64 * 1024):
                    yield chunk

    def _send(self, request: urllib.request.Request, timeout: float) -> Any:

        from drophost.client import redirects

        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        with self._urllib_errors(timeout):
            with redirects.opener().open(request, timeout=timeout) as response:  # http(s) only
                body = response.read()
                self._check_marker(response.headers.get(API_MARKER), response.status)
                return _decode(body)

    @contextmanager
    def _urllib_errors(self, timeout: float) -> Iterator[None]:
        """urllib's errors as the CLI's: a refusal with the service's message, or the server unreachable."""
        import urllib.error

        try:
            yield
        except urllib.error.HTTPError as exc:
            raise self._refused(exc) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            raise self._unreachable(exc, timeout) from None

    def _check_marker(self, marker: str | None, status: int) -> None:
        """Every answer of the DropHost service carries X-Drophost-Api; the sites port and other servers' do not."""
        # nginx itself answers a few on DropHost's own port (body too large, the service down).
        if marker is not None or status in NGINX_OWN_ANSWERS or self._describes_drophost():
            return
        raise ClientError(
            f"this is not a DropHost API at {self.server} (it answered {status} without DropHost's"
            f" {API_MARKER} header); check --server, DROPHOST_URL or the config file",
            EXIT_UNREACHABLE,
            status=status,
        )

    def _describes_drophost(self) -> bool:
        """A DropHost from before the marker still describes itself at /api/openapi.json (asked once)."""
        if self._described is None:
            import urllib.request

            try:
                request = urllib.request.Request(self.server + "/api/openapi.json", method="GET")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # http(s) only
                    document = _decode(response.read())
                info = document.get("info") if isinstance(document, dict) else None
                self._described = isinstance(info, dict) and info.get("title") == "DropHost"
            except (OSError, ValueError):
                self._described = False
        return self._described

    def _refused(self, exc: urllib.error.HTTPError) -> ClientError:
        body = exc.read()
        return self._refusal(exc.code, exc.headers.get(API_MARKER), body)

    def _refusal(self, status: int, marker: str | None, body: bytes) -> ClientError:
        self._check_marker(marker, status)
        answer = _decode(body)
        message = answer.get("error") if isinstance(answer, dict) else None
        return ClientError(str(message or f"the server answered {status}"), exit_code_for(status), status=status)

    def _unreachable(self, exc: OSError, timeout: float) -> ClientError:
        if isinstance(exc, TimeoutError):
            # Connected, then silence: urllib raises a read's timeout as it is (a connect's comes as URLError).
            return ClientError(
                f"{self.server} accepted the connection but did not answer within {timeout:g} s"
                " (--timeout or DROPHOST_TIMEOUT to wait longer)",
                EXIT_UNREACHABLE,
            )
        reason = getattr(exc, "reason", exc)
        return ClientError(f"cannot reach {self.server}: {reason}", EXIT_UNREACHABLE)


def _pieces(head: bytes, archive: IO[bytes], tail: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    yield head
    while piece := archive.read(size):
        yield piece
    yield tail


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def validate_server(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"the server address {url!r} must start with http:// or https://", EXIT_USAGE)
    return url.rstrip("/")

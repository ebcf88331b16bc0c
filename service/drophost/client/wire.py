"""HTTP/1.1 over a plain socket, for the CLI's requests to an http:// DropHost without a proxy.

What urllib.request would send and how it reads the answer, for the requests the CLI makes: one
request per connection (`Connection: close`), the same headers, a body of bytes, a file or pieces,
and an answer read by Content-Length, chunks or to the end. It exists because importing urllib.request
(http.client, email, ssl) cost a one-file `drophost deploy` about 35 of its ~150 ms; client/http.py
decides when it is used and keeps urllib for everything else.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from typing import IO, NamedTuple

Body = bytes | IO[bytes] | Iterable[bytes] | None

USER_AGENT = f"Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}"  # what urllib sends
_MAX_LINE = 65536  # http.client's limit for the status line and each header
_MAX_HEADERS = 100  # http.client's limit on the header lines of an answer
# http.client has no limit of its own but 100 lines of 64 KiB; no DropHost answer comes near this one.
_MAX_HEAD_BYTES = 256 * 1024
# What http.client refuses in a request's target (_contains_disallowed_url_pchar_re): controls and space.
_NOT_IN_TARGET = frozenset(map(chr, [*range(0x21), 0x7F]))
# A query or fragment in the server URL moves or drops each request's path in urllib's hands.
_NOT_IN_SERVER = _NOT_IN_TARGET | {"?", "#"}
_NOT_IN_HEADER = frozenset("\r\n\x00")  # what would end a header line early or cut it
_PIECE = 256 * 1024
_BODY_METHODS = ("PATCH", "POST", "PUT")  # sent with Content-Length: 0 when they carry nothing


class Address(NamedTuple):
    host: str
    port: int
    host_header: str  # the URL's host and port as written, as urllib sends it
    base: str  # the server URL's own path, before each request's


class Answer(NamedTuple):
    status: int
    reason: str
    head: bytes  # the header lines as received
    headers: dict[str, str]  # lower-case name -> value (the first one of a repeated name, as http.client's get)
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class SendError(Exception):
    """Connecting or sending failed: urllib reports these as a URLError with this reason."""

    def __init__(self, reason: OSError) -> None:
        super().__init__(str(reason))
        self.reason = reason


def address_of(server: str) -> Address | None:
    """Where to connect for a plain http:// server URL, as http.client parses its host and port;
    None for anything else (https://, credentials in the URL, a port that is not a number, a query or a
    fragment, what http.client would refuse or could not send: a control character, a space, anything
    not ASCII) (pure)."""
    if not server.startswith("http://") or not server.isascii() or any(c in _NOT_IN_SERVER for c in server):
        return None
    netloc, slash, path = server[len("http://") :].partition("/")
    if not netloc or "@" in netloc or "%" in netloc:
        return None
    host, port = netloc, 80
    colon, bracket = netloc.rfind(":"), netloc.rfind("]")
    if colon > bracket:
        digits = netloc[colon + 1 :]
        if digits and not (digits.isascii() and digits.isdigit()):
            return None
        host, port = netloc[:colon], int(digits) if digits else 80
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return None
    return Address(host, port, netloc, slash + path)


def http_proxy_set(environ: Mapping[str, str]) -> bool:
    """Whether urllib would send an http:// request through a proxy (urllib.request.getproxies_environment:
    *_proxy variables of any case, the lower-case name winning, http_proxy ignored under CGI)."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        if value and name.lower()[-6:] == "_proxy":
            proxies[name.lower()[:-6]] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name.lower()[:-6]] = value
            else:
                proxies.pop(name.lower()[:-6], None)
    return "http" in proxies


def request_head(address: Address, method: str, path: str, headers: Mapping[str, str], body: Body) -> bytes:
    """The request line and headers urllib would send (pure).

    Raises ValueError for a target or a header that would split the request, as http.client does; the
    message never holds the value (an Authorization header's is the token)."""
    target = address.base + path
    if any(c in _NOT_IN_TARGET for c in target):
        raise ValueError("the request's path has a control character or a space")
    for name, value in headers.items():
        if any(c in _NOT_IN_HEADER for c in name + value):
            raise ValueError(f"the request's {name.title()} header has a line break or a NUL")
    fields = {"Host": address.host_header}
    for name, value in headers.items():
        fields[name.title()] = value
    if body is not None and "Content-Type" not in fields:
        fields["Content-Type"] = "application/x-www-form-urlencoded"
    if "Content-Length" not in fields:
        if isinstance(body, bytes):
            fields["Content-Length"] = str(len(body))
        elif body is None and method.upper() in _BODY_METHODS:
            fields["Content-Length"] = "0"
    fields.setdefault("User-Agent", USER_AGENT)
    fields["Connection"] = "close"
    lines = [f"{method} {target} HTTP/1.1", "Accept-Encoding: identity"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(
    address: Address, method: str, path: str, headers: Mapping[str, str], body: Body, timeout: float
) -> Answer:
    """Send one request and read its whole answer.

    Raises SendError when connecting or sending fails; TimeoutError or ConnectionError while
    waiting for or reading the answer (as urllib does), and whatever the body's pieces raise."""
    head = request_head(address, method, path, headers, body)
    try:
        connection = socket.create_connection((address.host, address.port), timeout)
    except OSError as exc:
        raise SendError(exc) from None
    with connection:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # as http.client: not every system has it
        try:
            _send_body(connection, head, body)
        except OSError as exc:
            raise SendError(exc) from None
        with connection.makefile("rb") as answer:
            return read_answer(answer, method)


def _send_body(connection: socket.socket, head: bytes, body: Body) -> None:
    if body is None or isinstance(body, bytes):
        connection.sendall(head + (body or b""))
        return
    connection.sendall(head)
    if hasattr(body, "read"):
        while piece := body.read(_PIECE):
            connection.sendall(piece)
        return
    for piece in body:
        connection.sendall(piece)


def read_answer(stream: IO[bytes], method: str) -> Answer:
    """Status line, headers and body from the connection, as http.client reads them.

    Raises ConnectionResetError for an answer that is not HTTP or is broken, as for one cut short."""
    try:
        return _answer(stream, method)
    except ValueError as exc:  # whatever slipped past the checks: a broken answer, not a crash
        raise ConnectionResetError(f"the server's answer is broken ({type(exc).__name__})") from None


def _answer(stream: IO[bytes], method: str) -> Answer:
    while True:
        status, reason = _status_line(stream)
        head = _header_block(stream)
        if status != 100:  # a 100 Continue is followed by the real answer
            break
    headers = parse_headers(head)
    length = headers.get("content-length", "").strip()
    if method.upper() == "HEAD" or status in (204, 304) or status < 200:
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _chunked(stream)
    elif length.isascii() and length.isdigit():
        body = _exactly(stream, int(length))
    else:
        body = stream.read()
    return Answer(status, reason, head, headers, body)


def parse_headers(head: bytes) -> dict[str, str]:
    """Lower-case name -> value as http.client's parse_headers and get() see them (pure): the first
    value of a repeated name; a line starting with a space or tab continues the one before; the
    headers end at the first line that is not one (a name with a space, no colon)."""
    headers: dict[str, str] = {}
    name = ""
    for raw in head.splitlines():  # bytes: only CR and LF end a line, not the \x85 a str splits at
        line = raw.decode("iso-8859-1")
        if line[:1] in (" ", "\t"):
            if name:
                headers[name] += "\r\n" + line
            continue
        field, colon, value = line.partition(":")
        if not colon or not all("!" <= c <= "~" for c in field):
            break
        name = field.lower() if field.lower() not in headers else ""
        if name:
            headers[name] = value.lstrip(" \t")
    return headers


def _line(stream: IO[bytes]) -> bytes:
    line = stream.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ConnectionResetError("the server's answer has a line longer than 65536 bytes")
    return line


def _status_line(stream: IO[bytes]) -> tuple[int, str]:
    line = _line(stream).decode("iso-8859-1")
    if not line:
        # http.client's RemoteDisconnected, which is a ConnectionResetError with these words.
        raise ConnectionResetError("Remote end closed connection without response")
    version, _, rest = line.strip().partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not (code.isascii() and code.isdigit()) or int(code) < 100:
        raise ConnectionResetError(f"the server did not answer in HTTP: {line.strip()[:80]!r}")
    return int(code), reason.strip()


def _header_block(stream: IO[bytes]) -> bytes:
    lines: list[bytes] = []
    size = 0
    while (line := _line(stream)) not in (b"\r\n", b"\n", b""):
        lines.append(line)
        size += len(line)
        if len(lines) > _MAX_HEADERS:
            raise ConnectionResetError(f"the server's answer has more than {_MAX_HEADERS} header lines")
        if size > _MAX_HEAD_BYTES:
            raise ConnectionResetError(f"the server's answer has more than {_MAX_HEAD_BYTES} bytes of headers")
    return b"".join(lines)


def _exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise ConnectionResetError(f"the answer ended after {len(data)} of {size} bytes")
    return data


def _chunked(stream: IO[bytes]) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = _line(stream).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ConnectionResetError("the answer's chunks are broken")
        if size == 0:
            _header_block(stream)  # trailers
            return b"".join(pieces)
        pieces.append(_exactly(stream, size))
        _line(stream)  # the newline after each chunk

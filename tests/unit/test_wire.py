"""The CLI's own HTTP/1.1 (client/wire.py) says and understands what urllib.request would."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from drophost.client import wire
from drophost.client.http import ApiClient, ClientError


def recorded_request(send: object) -> bytes:
    """What a client sends to a listening socket that answers 200 with a small JSON body."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while b"\r\n\r\n" not in received:
                received.extend(connection.recv(65536))
            head, _, rest = bytes(received).partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(received) - len(head) - 4 < length:
                received.extend(connection.recv(65536))
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Drophost-Api: 1\r\n\r\n{}")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        send(port)  # type: ignore[operator]
    finally:
        thread.join(5)
        listener.close()
    return bytes(received).replace(f":{port}".encode(), b":PORT")


def lines_of(raw: bytes) -> tuple[str, set[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *fields = head.decode("latin-1").split("\r\n")
    return first, set(fields), body


@pytest.mark.parametrize(
    ("method", "body", "headers"),
    [
        ("GET", None, {}),
        ("POST", b'{"a":1}', {"Content-Type": "application/json"}),
        ("DELETE", None, {}),
        ("POST", [b"piece one ", b"piece two"], {"Content-Type": "application/octet-stream", "Content-Length": "19"}),
    ],
)
def test_a_request_is_sent_as_urllib_sends_it(method: str, body: object, headers: dict[str, str]) -> None:
    auth = {"Authorization": "Bearer t", "Accept": "application/json"}

    def by_urllib(port: int) -> None:
        data = iter(body) if isinstance(body, list) else body
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/base/api/x?q=1", data=data, method=method, headers=headers
        )  # type: ignore[arg-type]
        for name, value in auth.items():
            request.add_header(name, value)
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def by_wire(port: int) -> None:
        address = wire.address_of(f"http://127.0.0.1:{port}/base")
        assert address is not None
        data = iter(body) if isinstance(body, list) else body
        answer = wire.exchange(address, method, "/api/x?q=1", {**headers, **auth}, data, 5)  # type: ignore[arg-type]
        assert (answer.status, answer.body, answer.header("x-drophost-api")) == (200, b"{}", "1")

    assert lines_of(recorded_request(by_wire)) == lines_of(recorded_request(by_urllib))


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080, "127.0.0.1:8080", "")),
        ("http://drophost.lan", ("drophost.lan", 80, "drophost.lan", "")),
        ("http://[::1]:9000/prefix", ("::1", 9000, "[::1]:9000", "/prefix")),
        ("https://drophost.lan", None),
        ("http://user:secret@drophost.lan", None),
        ("http://drophost.lan:http", None),
        ("http://drophost.lan?x", None),  # urllib would send /?x/api/..., not /api/...
        ("http://drophost.lan#x", None),
        ("http://drop\x01host.lan", None),  # http.client refuses control characters in the host too
        ("http://drophost.lan:80\x7f", None),
    ],
)
def test_only_a_plain_http_address_is_spoken_to_directly(server: str, expected: tuple[str, int, str, str]) -> None:
    assert wire.address_of(server) == (wire.Address(*expected) if expected else None)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"http_proxy": "http://proxy:3128"},
        {"HTTP_PROXY": "http://proxy:3128"},
        {"HTTP_PROXY": "http://proxy:3128", "http_proxy": ""},
        {"https_proxy": "http://proxy:3128", "no_proxy": "*"},
        {"http_proxy": "http://proxy:3128", "REQUEST_METHOD": "GET"},
    ],
)
def test_a_proxy_is_seen_where_urllib_sees_one(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert wire.http_proxy_set(environ) == ("http" in urllib.request.getproxies_environment())


def answers(*raw: bytes) -> Iterator[wire.Answer]:
    for one in raw:
        yield wire.read_answer(io.BytesIO(one), "GET")


def test_answers_are_read_by_length_by_chunks_and_to_the_end() -> None:
    by_length, chunked, to_the_end, after_continue = answers(
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello and more",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=1\r\nlo\r\n0\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such thing",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n",
    )
    assert (by_length.status, by_length.reason, by_length.body) == (201, "Created", b"hello")
    assert chunked.body == b"hello"
    assert (to_the_end.status, to_the_end.body, to_the_end.header("Content-Type")) == (
        404,
        b"no such thing",
        "text/plain",
    )
    assert (after_continue.status, after_continue.body) == (413, b"")


def test_a_connection_closed_without_an_answer_is_named_as_http_client_names_it() -> None:
    with pytest.raises(ConnectionResetError, match="^Remote end closed connection without response$"):
        wire.read_answer(io.BytesIO(b""), "GET")


class Redirecting(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status in its path's first segment, to /target on the same server;
    /target answers as DropHost does."""

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/target"):
            body = json.dumps({"method": self.command}).encode()
            self.send_response(200)
        else:
            body = b""
            self.send_response(int(self.path.split("/")[1]))
            self.send_header("Location", "/target")
        self.send_header("X-Drophost-Api", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_followed_or_refused_as_urllib_does(redirecting: str) -> None:
    client = ApiClient(redirecting, "t")
    assert client.get("/301") == {"method": "GET"}
    assert client.get("/308") == {"method": "GET"}
    assert client.request("POST", "/303", {"a": 1}) == {"method": "GET"}  # followed without the body
    assert client.post_stream("/302", iter([b"xy"]), 2) == {"method": "GET"}
    for refused in ("/307", "/308"):
        with pytest.raises(ClientError) as raised:
            client.request("POST", refused, {})
        assert (raised.value.message, raised.value.status) == (f"the server answered {refused[1:]}", int(refused[1:]))
    with pytest.raises(ClientError) as raised:
        client.get("/300")
    assert (raised.value.message, raised.value.status) == ("the server answered 300", 300)


def answered_by(raw: bytes) -> Iterator[int]:
    """A port whose one connection reads the request and gets `raw` as its answer."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(raw)
            except OSError:
                pass  # the client gave up reading, as it should

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: a\r\n" * 101 + b"\r\n", "more than 100 header lines"),
        (b"HTTP/1.1 200 OK\r\n" + (b"X-Pad: " + b"a" * 8000 + b"\r\n") * 40 + b"\r\n", "bytes of headers"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + b"X-Trailer: a\r\n" * 101,
            "more than 100 header lines",
        ),
    ],
)
def test_endless_headers_or_trailers_are_a_broken_answer(raw: bytes, words: str) -> None:
    with pytest.raises(ConnectionResetError, match=words):
        wire.read_answer(io.BytesIO(raw + b"\r\n" * 10**5), "GET")


def test_a_server_sending_endless_headers_is_unreachable_not_a_memory_hog() -> None:
    for port in answered_by(b"HTTP/1.1 200 OK\r\nX-Drophost-Api: 1\r\n" + b"X-Pad: aaaa\r\n" * 10**5):
        with pytest.raises(ClientError, match="more than 100 header lines") as raised:
            ApiClient(f"http://127.0.0.1:{port}", "t", timeout=5).get("/api/whoami")
        assert raised.value.exit_code == 3


@pytest.mark.parametrize(
    "server",
    [
        "http://127.0.0.1:8080/x\r\nX-Injected: yes\r\nY:",
        "http://127.0.0.1:8080/a b",
        "http://127.0.0.1:8080/a\tb",
        "http://127.0.0.1:8080/a\x00",
        "http://127.0.0.1:8080/a\x7f",
        "http://127.0.0.1:8080/caf\u00e9",
    ],
)
def test_a_server_path_http_client_would_refuse_is_left_to_urllib(server: str) -> None:
    assert wire.address_of(server) is None
    with pytest.raises((http.client.InvalidURL, UnicodeEncodeError)):  # urllib's refusal, as before
        ApiClient(server, "t", timeout=1).get("/api/whoami")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/x\r\nX-Injected: yes", {}),
        ("/api/x\x00", {}),
        ("/api/x y", {}),
        ("/api/x", {"Authorization": "Bearer se\r\ncret"}),
        ("/api/x", {"Authorization": "Bearer se\ncret"}),
        ("/api/x", {"Authorization": "Bearer se\x00cret"}),
        ("/api/x", {"X-A\r\nB": "1"}),
    ],
)
def test_nothing_splits_a_request(path: str, headers: dict[str, str]) -> None:
    address = wire.address_of("http://127.0.0.1:8080")
    assert address is not None
    with pytest.raises(ValueError) as raised:
        wire.request_head(address, "GET", path, headers, None)
    assert "cret" not in str(raised.value)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 \xb2\xb2\xb2 OK\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\xb2\r\nabc\r\n0\r\n\r\n",
    ],
)
def test_odd_digits_in_an_answer_are_a_broken_answer_not_a_crash(raw: bytes) -> None:
    with pytest.raises(ConnectionResetError):
        wire.read_answer(io.BytesIO(raw), "GET")


def test_a_content_length_of_odd_digits_is_read_to_the_end() -> None:
    (answer,) = answers(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}")
    assert answer.body == b"{}"


def test_a_broken_answer_is_a_client_error_not_a_traceback() -> None:
    for port in answered_by(b"HTTP/1.1 2\xb20 OK\r\nX-Drophost-Api: 1\r\n\r\n{}"):
        with pytest.raises(ClientError) as raised:
            ApiClient(f"http://127.0.0.1:{port}", "t", timeout=5).get("/api/whoami")
        assert raised.value.exit_code == 3


def test_malformed_answers_are_read_as_http_client_reads_them() -> None:
    repeated, not_chunked, spaced, folded = answers(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}and more",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked\r\nContent-Length: 2\r\n\r\n{}more",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Drophost-Api : 1\r\nX-After: 1\r\n\r\n{}more",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n X-Drophost-Api: 1\r\nContent-Length: 2\r\n\r\n{}more",
    )
    assert repeated.body == not_chunked.body == spaced.body == folded.body == b"{}"
    assert spaced.header("X-Drophost-Api") is None and folded.header("X-Drophost-Api") is None


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 2\r\nContent-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"X-Drophost-Api : 1\r\nContent-Length: 2\r\n",
        b"Content-Length: 2\r\nNo colon here\r\nX-Drophost-Api: 1\r\n",
        b"X-A: 1\r\n X-Drophost-Api: 1\r\n\tmore\r\nContent-Type: text/plain\r\n",
        b" X-Drophost-Api: 1\r\nContent-Type: text/plain\r\n",
        b"Location: /a\x85b\r\nX-Drophost-Api: \x85\r\n",
        b"Transfer-Encoding: chunked \r\nContent-Length:  2 \r\nX-A:\t1\t\r\n \r\n",
    ],
)
def test_headers_are_what_http_client_makes_of_them(head: bytes) -> None:
    message = http.client.parse_headers(io.BytesIO(head + b"\r\n"))
    names = ("content-length", "transfer-encoding", "x-drophost-api", "x-a", "content-type", "location")
    expected = {name: message.get(name) for name in names}
    assert {name: wire.parse_headers(head).get(name) for name in names} == expected


class Answering(http.server.BaseHTTPRequestHandler):
    """/to/URL redirects to URL; anything else answers with the Authorization header it was sent."""

    def do_GET(self) -> None:
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/") :])
            body = b""
        else:
            self.send_response(200)
            body = json.dumps({"authorization": self.headers.get("Authorization")}).encode()
        self.send_header("X-Drophost-Api", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[tuple[str, str]]:
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{server.server_address[1]}" for server in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("over", ["wire", "urllib"])
def test_the_token_goes_along_a_redirect_only_to_the_same_server(two_servers: tuple[str, str], over: str) -> None:
    here, elsewhere = two_servers
    client = ApiClient(here, "secret", timeout=5)
    if over == "urllib":
        client._address = None  # as behind a proxy or for https://
    assert client.get("/to//same") == {"authorization": "Bearer secret"}
    assert client.get(f"/to/{here}/same") == {"authorization": "Bearer secret"}
    assert client.get(f"/to/{elsewhere}/other") == {"authorization": None}
    assert client.get(f"/to/{elsewhere}/to/{here}/back") == {"authorization": None}  # once dropped, gone
    assert list(client.stream(f"/to/{elsewhere}/other")) == [b'{"authorization": null}']
    assert list(client.stream(f"/to/{here}/same")) == [b'{"authorization": "Bearer secret"}']


def test_an_origin_is_scheme_host_and_port() -> None:
    from drophost.client.redirects import origin

    assert origin("http://Example.lan/a") == origin("http://example.lan:80/b") == ("http", "example.lan", 80)
    assert origin("https://example.lan") == ("https", "example.lan", 443)
    assert origin("http://example.lan:x/") is None

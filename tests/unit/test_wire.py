"""The CLI's own HTTP/1.1 (client/wire.py) says and understands what urllib.request would."""

from __future__ import annotations

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

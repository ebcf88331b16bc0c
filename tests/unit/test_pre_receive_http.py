"""The pre-receive hook speaks HTTP/1.1 itself (no http.client, slow to import): its answers read
by Content-Length, chunked or until the connection closes, over a unix socket or TCP."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

HOOK = Path(__file__).parents[2] / "hooks" / "pre-receive"


def load_hook() -> types.ModuleType:
    module = types.ModuleType("pre_receive")
    exec(compile(HOOK.read_text(), str(HOOK), "exec"), module.__dict__)
    return module


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


class Server:
    """Answers each connection with the next canned response; keeps the requests it read."""

    def __init__(self, listener: socket.socket, answers: list[bytes]) -> None:
        self.listener = listener
        self.answers = answers
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        for answer in self.answers:
            conn, _ = self.listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                for piece in answer.split(b"|"):  # sent in pieces, as a stream arrives
                    conn.sendall(piece)


@pytest.fixture
def unix_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    monkeypatch.setenv("DROPHOST_HOOK_SOCKET", path)
    monkeypatch.setenv("DROPHOST_HOOK_TOKEN", "t0ken")
    monkeypatch.setenv("DROPHOST_HOOK_TIMEOUT", "10")
    yield types.SimpleNamespace(listener=listener)
    listener.close()


def test_a_json_answer_and_a_chunked_log_stream_over_the_unix_socket(unix_server: types.SimpleNamespace) -> None:
    hook = load_hook()
    answer = b'{"deployments": [7]}'
    server = Server(
        unix_server.listener,
        [
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n|%s"
            % (len(answer), answer),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n|"
            + chunked(b"one\ntw", b"o\n").replace(b"o\n", b"o\n|", 1),
            b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n|"
            + json.dumps({"error": "the build failed"}).encode(),  # no length: until the connection closes
        ],
    )
    assert hook.ask({"stage": "paths"}) == {"deployments": [7]}
    printed = io.StringIO()
    with redirect_stdout(printed):
        hook.follow_log(7)
    assert printed.getvalue() == "one\ntwo\n"
    with pytest.raises(hook.Refused, match="the build failed"):
        hook.ask({"stage": "result"})
    server.thread.join(5)
    post, get, _ = server.requests
    assert post.startswith(b"POST /api/git/hook HTTP/1.1\r\n")
    assert b"\r\nHost: localhost\r\n" in post and b"\r\nAuthorization: Bearer t0ken\r\n" in post
    assert post.endswith(b'\r\n\r\n{"stage": "paths"}') and b"\r\nContent-Length: 18\r\n" in post
    assert get.startswith(b"GET /api/deployments/7/log?follow=1 HTTP/1.1\r\n") and b"Content-Length" not in get


def test_a_cut_answer_or_no_service_is_a_clear_refusal(unix_server: types.SimpleNamespace) -> None:
    hook = load_hook()
    Server(unix_server.listener, [b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"deploy'])
    with pytest.raises(ValueError):
        hook.ask({"stage": "paths"})
    unix_server.listener.close()
    os.unlink(os.environ["DROPHOST_HOOK_SOCKET"])
    with pytest.raises(OSError):
        hook.ask({"stage": "paths"})


def test_tcp_host_and_port_as_http_client_read_them(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook()
    monkeypatch.delenv("DROPHOST_HOOK_SOCKET", raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener:
        server = Server(listener, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
        monkeypatch.setenv("DROPHOST_HOOK_HOST", f"127.0.0.1:{port}")
        assert hook.ask({}) == {}
        server.thread.join(5)
    assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in server.requests[0]
    for given, address, host in (
        ("svc", ("svc", 80), "svc"),
        ("[::1]:8080", ("::1", 8080), "[::1]:8080"),
        ("[::1]", ("::1", 80), "[::1]"),
    ):
        monkeypatch.setenv("DROPHOST_HOOK_HOST", given)
        assert hook.service_address() == (None, address, host)


def test_the_hook_does_not_import_http_client() -> None:
    run = f"exec(compile(open({str(HOOK)!r}).read(), 'hook', 'exec'), {{}})"
    code = f"import sys; {run}; print('http.client' in sys.modules)"
    found = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"

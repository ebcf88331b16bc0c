"""The `drophost` command's failures, run as the real command: each ends in one clear line on stderr."""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drophost.client.http import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UNREACHABLE, ApiClient, ClientError
from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack


def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    streams = kwargs or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run(
        [sys.executable, "-m", "drophost", *argv],
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin", **(env or {})},
        text=True,
        timeout=timeout,
        **streams,  # type: ignore[call-overload]
    )


def live_env(live: LiveStack) -> dict[str, str]:
    return {"DROPHOST_URL": live.base_url, "DROPHOST_API_TOKEN": TOKEN}


def deploy(live: LiveStack, tmp_path: Path, slot: str, text: str) -> None:
    folder = tmp_path / slot
    folder.mkdir(exist_ok=True)
    (folder / "index.html").write_text(text)
    result = run("deploy", str(folder), "--slot", slot, env=live_env(live))
    assert result.returncode == 0, result.stderr


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def other_server() -> Iterator[str]:
    """Another web server: answers 404 with a page of its own to everything."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/nothing-here"
    server.shutdown()
    server.server_close()


def test_output_into_a_closed_pipe_ends_quietly_as_by_sigpipe(live: LiveStack, tmp_path: Path) -> None:
    for n in range(3):
        deploy(live, tmp_path, f"site-{n}", f"<p>{n}</p>")
    for argv in (["list"], ["logs", "site-1"], ["versions", "site-2"]):
        reader, writer = os.pipe()
        os.close(reader)  # the `head` that has already gone
        try:
            result = run(*argv, env=live_env(live), stdout=writer, stderr=subprocess.PIPE)
        finally:
            os.close(writer)
        assert result.returncode == -13, result.stderr  # killed by SIGPIPE, as cat or ls would be
        assert result.stderr == "", result.stderr
    # Through a real `head`, as a person types it.
    shell = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{sys.executable} -m drophost list | head -2",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **live_env(live)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.stdout.splitlines()[0].split()[:2] == ["SLOT", "STATUS"]
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr


def test_a_server_that_accepts_and_never_answers_is_given_up_on_with_its_name(silent_server: str) -> None:
    started = time.monotonic()
    result = run("list", "--timeout", "1", env={"DROPHOST_URL": silent_server, "DROPHOST_API_TOKEN": "t"})
    assert time.monotonic() - started < 15
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stderr == (
        f"drophost: {silent_server} accepted the connection but did not answer within 1 s"
        " (--timeout or DROPHOST_TIMEOUT to wait longer)\n"
    )
    # The setting, from the environment.
    result = run(
        "versions", "x", env={"DROPHOST_URL": silent_server, "DROPHOST_API_TOKEN": "t", "DROPHOST_TIMEOUT": "1"}
    )
    assert result.returncode == EXIT_UNREACHABLE and "within 1 s" in result.stderr
    result = run("list", "--timeout", "0", env={"DROPHOST_URL": silent_server, "DROPHOST_API_TOKEN": "t"})
    assert result.returncode == 2 and "timeout" in result.stderr


def test_an_upload_waits_longer_but_still_ends(silent_server: str) -> None:
    client = ApiClient(silent_server, "t", timeout=0.2, upload_timeout=1)
    started = time.monotonic()
    with pytest.raises(ClientError) as raised:
        client.upload(io.BytesIO(b"PK\x05\x06" + bytes(18)), "site.zip", {"slot": "site"}, None)
    assert 0.9 < time.monotonic() - started < 10
    assert raised.value.exit_code == EXIT_UNREACHABLE
    assert raised.value.message.startswith(f"{silent_server} accepted the connection but did not answer within 1 s")


def test_check_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "deploy.yaml").write_text("sites: []\n")
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = run("check", str(tmp_path / "deploy.yaml"), stdout=writer, stderr=subprocess.PIPE)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (-13, "")


class OlderDropHost(http.server.BaseHTTPRequestHandler):
    """A DropHost from before X-Drophost-Api: it describes itself, and answers without the marker."""

    def do_GET(self) -> None:
        answers = {
            "/api/openapi.json": {"openapi": "3.1.0", "info": {"title": "DropHost"}},
            "/api/slots": {"slots": []},
        }
        body = json.dumps(answers.get(self.path, {"error": "there is nothing at this address"})).encode()
        self.send_response(200 if self.path in answers else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_drophost_from_before_the_marker_is_still_understood() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OlderDropHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"DROPHOST_URL": f"http://127.0.0.1:{server.server_address[1]}", "DROPHOST_API_TOKEN": "t"}
        result = run("list", "--json", env=env)
        assert (result.returncode, result.stdout) == (0, '{"slots": []}\n'), result.stderr
        result = run("versions", "nope", env=env)
        assert (result.returncode, result.stderr) == (EXIT_NOT_FOUND, "drophost: there is nothing at this address\n")
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_drophost_is_named_as_such(live: LiveStack, other_server: str) -> None:
    sites = f"http://127.0.0.1:{live.settings.sites_listen_port}"
    for server in (sites, other_server):
        result = run("list", env={"DROPHOST_URL": server, "DROPHOST_API_TOKEN": TOKEN})
        assert result.returncode == EXIT_UNREACHABLE
        assert result.stderr.startswith(f"drophost: this is not a DropHost API at {server} (it answered 404")
        assert result.stderr.count("\n") == 1
    result = run("list", "--json", env=live_env(live))
    assert result.returncode == 0 and json.loads(result.stdout) == {"slots": []}


def test_a_typed_slot_that_does_not_exist_is_named_in_every_command(live: LiveStack, tmp_path: Path) -> None:
    deploy(live, tmp_path, "team-docs", "<p>docs</p>")
    for argv in (
        ["diff", "team-doc", "1", "2"],
        ["versions", "team-doc"],
        ["rollback", "team-doc"],
        ["rollback", "team-doc", "--to", "1"],
        ["promote", "team-doc", "1"],
        ["logs", "team-doc"],
    ):
        result = run(*argv, env=live_env(live))
        assert (result.returncode, result.stderr) == (EXIT_NOT_FOUND, "drophost: no such slot 'team-doc'\n"), argv
    # The API says the same, for every route with a slot in its path.
    for method, path in (
        ("GET", "/api/slots/team-doc/diff?a=1&b=2"),
        ("GET", "/api/slots/team-doc/versions/1"),
        ("GET", "/api/slots/team-doc/events"),
        ("POST", "/api/slots/team-doc/versions/1/pin"),
        ("PATCH", "/api/slots/team-doc"),
        ("DELETE", "/api/slots/team-doc"),
    ):
        body = {"json": {"ttl": "1h"}} if method == "PATCH" else {}
        answer = live.api(method, path, **body)
        assert (answer.status_code, answer.json()["error"]) == (404, "no such slot 'team-doc'"), path
    # A slot that exists, with a version that does not, still says which version.
    result = run("diff", "team-docs", "1", "9", env=live_env(live))
    assert result.returncode == EXIT_NOT_FOUND and "has no config version 9" in result.stderr


def test_a_refused_token_names_where_it_came_from_never_itself(live: LiveStack, tmp_path: Path) -> None:
    config = tmp_path / "drophost" / "cli.ini"
    config.parent.mkdir()
    config.write_text(f"[drophost]\nserver = {live.base_url}\ntoken = {TOKEN}\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert run("list", env=env).returncode == 0
    result = run("list", env={**env, "DROPHOST_API_TOKEN": "wrong-token-value"})
    assert result.returncode == EXIT_AUTH
    assert result.stderr == (
        "drophost: the API token is not valid (the token came from the environment variable"
        f" DROPHOST_API_TOKEN; {config} holds another)\n"
    )
    config.write_text(f"[drophost]\nserver = {live.base_url}\ntoken = wrong-token-value\n")
    result = run("list", env=env)
    assert result.stderr == f"drophost: the API token is not valid (the token came from {config})\n"
    result = run("list", "--token", "wrong-token-value", env=env)
    assert result.stderr == "drophost: the API token is not valid (the token came from --token)\n"
    assert "wrong-token-value" not in result.stderr

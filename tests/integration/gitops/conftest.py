"""Real git for the GitOps tests: repositories in tmp dirs and git's smart HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from drophost.settings import Settings
from drophost.store import gitjobs
from drophost.store.rows import Conn
from drophost.web.app import create_app
from tests.conftest import AUTH, TOKEN, Stack, start_nginx, stop_process

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.lan",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.lan",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**GIT_ENV, **(env or {})}, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


class Repo:
    """A working repository whose commits are pushed to a bare repository the server exports."""

    def __init__(self, root: Path, name: str) -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        git("init", "--quiet", "--bare", str(self.bare))
        git("init", "--quiet", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str], *, branch: str = "main", symlinks: dict[str, str] | None = None) -> str:
        existing = git("branch", "--list", branch, cwd=self.work)
        git("checkout", "--quiet", *([branch] if existing else ["-b", branch]), cwd=self.work)
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for name, target in (symlinks or {}).items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, self.work / name)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", f"commit on {branch}", cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"{branch}:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def delete_branch(self, branch: str) -> None:
        git("push", "--quiet", "origin", f":{branch}", cwd=self.work)


class GitHttpServer:
    """`git http-backend` behind a tiny CGI wrapper: a real smart HTTP server on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.cgi()

            def do_POST(self) -> None:
                self.cgi()

            def cgi(self) -> None:
                server.requests += 1
                if self.path.startswith("/moved/"):
                    self.send_response(301)
                    self.send_header("Location", self.path[len("/moved") :])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    **GIT_ENV,
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("content-type", ""),
                    "CONTENT_LENGTH": str(length),
                    "REMOTE_ADDR": "127.0.0.1",
                }
                if self.headers.get("content-encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["content-encoding"]
                if self.headers.get("git-protocol"):
                    env["GIT_PROTOCOL"] = self.headers["git-protocol"]
                out = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
                ).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def repo(self, name: str) -> Repo:
        return Repo(self.root, name)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def git_server() -> Iterator[GitHttpServer]:
    root = Path(tempfile.mkdtemp(prefix="dh-git-"))
    server = GitHttpServer(root)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


GitopsFactory = Callable[..., Stack]


@pytest.fixture
def gitops_stack(settings: Settings, data_dir: Path) -> Iterator[GitopsFactory]:
    """Start nginx and the app with a deploy.yaml (text) and an environment holding webhook secrets."""
    opened: list[Stack] = []

    def make(deploy_yaml: str, environ: dict[str, str] | None = None, **overrides: Any) -> Stack:
        config = data_dir / "deploy.yaml"
        config.write_text(deploy_yaml)
        chosen = replace(settings, **{"config": str(config), "poll_interval": 0, **overrides})
        nginx, process = start_nginx(chosen)
        client = TestClient(create_app(chosen, environ or {}), raise_server_exceptions=False)
        client.__enter__()
        stack = Stack(settings=chosen, nginx=nginx, process=process, client=client)
        opened.append(stack)
        return stack

    yield make
    for stack in opened:
        stack.client.__exit__(None, None, None)
        stop_process(stack.process)


def queue_webhook_deploy(
    conn: Conn, *, slot: str, repo: str, pusher: str | None, settle: float = 0.0, max_settle: float = 0.0
) -> gitjobs.Queued:
    """A push webhook's deploy of branch main, queued straight in PostgreSQL (as GitOps would)."""
    return gitjobs.queue_deploy(
        conn,
        slot=slot,
        repo=repo,
        shown_repo=repo,
        branch="main",
        path="",
        template=None,
        trigger="webhook",
        pusher=pusher,
        ttl_seconds=None,
        settle=settle,
        max_settle=max_settle,
    )


def wait_for_deployment(stack: Stack, deployment_id: int, *, limit: float = 60.0) -> dict[str, Any]:
    """Poll until the deployment is live, superseded or failed (a bound, not a timed assertion)."""
    deadline = time.monotonic() + limit
    while True:
        answer: dict[str, Any] = stack.client.get(f"/api/deployments/{deployment_id}", headers=AUTH).json()
        if answer["status"] not in ("queued", "building") or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def wait_until(check: Callable[[], bool], *, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Served:
    """nginx in front of the app served by a real uvicorn on the service socket (for git clients)."""

    settings: Settings
    server: uvicorn.Server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def sites_url(self) -> str:
        """Sites are served on their own origin (the second nginx server)."""
        return self.settings.site_base_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base_url + path, headers=AUTH, timeout=60, **kwargs)

    def push_url(self, name: str, password: str = TOKEN) -> str:
        return f"http://pusher:{password}@127.0.0.1:{self.settings.port}/git/{name}.git"


@pytest.fixture
def served_stack(settings: Settings, data_dir: Path) -> Iterator[Callable[..., Served]]:
    started: list[tuple[Served, threading.Thread, Any]] = []

    def make(deploy_yaml: str, environ: dict[str, str] | None = None) -> Served:
        config = data_dir / "deploy.yaml"
        config.write_text(deploy_yaml)
        chosen = replace(settings, config=str(config), poll_interval=0)
        _, process = start_nginx(chosen)
        app = create_app(chosen, environ or {})
        server = uvicorn.Server(
            uvicorn.Config(app, uds=chosen.service_socket, lifespan="on", log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        served = Served(settings=chosen, server=server)
        started.append((served, thread, process))
        assert wait_until(lambda: server.started or not thread.is_alive())
        assert server.started
        return served

    yield make
    for served, thread, process in started:
        served.server.should_exit = True
        thread.join(timeout=30)
        stop_process(process)

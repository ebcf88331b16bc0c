"""Real parts for the tests: a throwaway PostgreSQL cluster, nginx on a free port, the app."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from drophost.localdb import LocalPostgres
from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings
from drophost.web.app import create_app

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_database_numbers = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_zip(files: dict[str, bytes | str], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def scratch_root() -> Iterator[Path]:
    """A world-traversable scratch folder: nginx workers and PostgreSQL run as other users."""
    root = Path(tempfile.mkdtemp(prefix="dh-tests-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(scratch_root: Path) -> Iterator[str]:
    """A DSN for a maintenance database: DATABASE_URL if given, else a private cluster."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    cluster = LocalPostgres(scratch_root / "pg", run_as="postgres")
    dsn = cluster.start()
    try:
        yield dsn.replace("dbname=drophost", "dbname=postgres")
    finally:
        cluster.stop()


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = psycopg.conninfo.make_conninfo(postgres_server, dbname=name)
    yield conninfo
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def data_dir(scratch_root: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="data-", dir=scratch_root))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        api_token=TOKEN,
        host="127.0.0.1",
        port=free_port(),
        sites_port=free_port(),
        service_socket=str(data_dir / "service.sock"),
        expiry_interval=0.2,
    )


@dataclass
class Stack:
    """nginx on free ports plus the app behind a TestClient; `get` goes through real nginx."""

    settings: Settings
    nginx: Nginx
    process: subprocess.Popen[bytes]
    client: TestClient

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def sites_base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.sites_listen_port}"

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        """Sites (/d/...) from the sites origin, everything else from the main port."""
        base = self.sites_base_url if path.startswith("/d/") else self.base_url
        return httpx.get(base + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def deploy(self, files: dict[str, bytes | str], slot: str, **fields: str) -> httpx.Response:
        return self.client.post(
            "/api/deployments",
            files={"file": (f"{slot}.zip", make_zip(files), "application/zip")},
            data={"slot": slot, **fields},
            headers=AUTH,
        )


def start_nginx(settings: Settings) -> tuple[Nginx, subprocess.Popen[bytes]]:
    nginx = Nginx(settings)
    nginx.prepare()
    return nginx, nginx.start()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    nginx, process = start_nginx(settings)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield Stack(settings=settings, nginx=nginx, process=process, client=client)
    finally:
        stop_process(process)


@pytest.fixture
def stack_factory(settings: Settings) -> Iterator[object]:
    """For tests that restart the app over the same data: call with Settings overrides."""
    started: list[subprocess.Popen[bytes]] = []

    def make(**overrides: Any) -> tuple[Settings, Nginx, subprocess.Popen[bytes]]:
        chosen = replace(settings, **overrides) if overrides else settings
        nginx, process = start_nginx(chosen)
        started.append(process)
        return chosen, nginx, process

    yield make
    for process in started:
        stop_process(process)


@dataclass
class LiveStack(Stack):
    """Like Stack, but the service also runs under uvicorn behind nginx, as with `drophost up`."""

    server: uvicorn.Server

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {**AUTH, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def serve_in_thread(settings: Settings, app: Starlette) -> tuple[uvicorn.Server, threading.Thread]:
    Path(settings.service_socket).unlink(missing_ok=True)
    config = uvicorn.Config(app, uds=settings.service_socket, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    return server, thread


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveStack]:
    nginx, process = start_nginx(settings)
    app = create_app(settings)
    server, thread = serve_in_thread(settings, app)
    try:
        # The same app: uvicorn ran its start-up, the TestClient only sends requests to it.
        client = TestClient(app, raise_server_exceptions=False)
        yield LiveStack(settings=settings, nginx=nginx, process=process, client=client, server=server)
    finally:
        stop_server(server, thread)
        stop_process(process)

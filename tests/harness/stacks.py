"""A running DropHost for a test: settings on free ports, nginx, and the app behind a TestClient."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import uvicorn
from starlette.testclient import TestClient

from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH, TOKEN
from tests.harness.database import fresh_database
from tests.harness.ports import free_port
from tests.harness.processes import serve_in_thread, start_nginx, stop_process, stop_server
from tests.harness.scratch import scratch_dir
from tests.harness.zips import make_zip


def stack_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for a test stack: the test token, free ports, a fast expiry loop."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        api_token=TOKEN,
        host="127.0.0.1",
        port=free_port(),
        sites_port=free_port(),
        service_socket=str(data_dir / "service.sock"),
        expiry_interval=0.2,
        **overrides,
    )


@contextmanager
def shared_settings(scratch_root: Path, postgres_server: str, **overrides: Any) -> Iterator[Settings]:
    """Like the `settings` fixture, for a stack that several tests of one module share."""
    name = f"m{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with scratch_dir("shared-", scratch_root) as data_dir, fresh_database(postgres_server, name) as database_url:
        yield stack_settings(data_dir, database_url, **overrides)


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


@dataclass
class LiveStack(Stack):
    """Like Stack, but the service also runs under uvicorn behind nginx, as with `drophost up`."""

    server: uvicorn.Server

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {**AUTH, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


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


# What the gitops_stack fixture hands a test: call with deploy.yaml's text, an environment, Settings overrides.
GitopsFactory = Callable[..., Stack]


@contextmanager
def running_stack(settings: Settings) -> Iterator[Stack]:
    """What the `stack` fixture does, for any settings and any scope."""
    nginx, process = start_nginx(settings)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield Stack(settings=settings, nginx=nginx, process=process, client=client)
    finally:
        stop_process(process)


@contextmanager
def running_live_stack(settings: Settings) -> Iterator[LiveStack]:
    """What the `live` fixture does: nginx, and the app under uvicorn on the service socket."""
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

"""Fixtures for the GitOps tests: git's smart HTTP server and stacks started with a deploy.yaml."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.git import GitHttpServer
from tests.harness.processes import serve_in_thread, start_nginx, stop_process, stop_server
from tests.harness.stacks import GitopsFactory, Served, Stack


@pytest.fixture
def git_server() -> Iterator[GitHttpServer]:
    root = Path(tempfile.mkdtemp(prefix="dh-git-"))
    server = GitHttpServer(root)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


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


@pytest.fixture
def served_stack(settings: Settings, data_dir: Path) -> Iterator[Callable[..., Served]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    processes: list[subprocess.Popen[bytes]] = []

    def make(deploy_yaml: str, environ: dict[str, str] | None = None, **overrides: Any) -> Served:
        config = data_dir / "deploy.yaml"
        config.write_text(deploy_yaml)
        chosen = replace(settings, config=str(config), poll_interval=0, **overrides)
        _, process = start_nginx(chosen)
        processes.append(process)
        server, thread = serve_in_thread(chosen, create_app(chosen, environ or {}))
        servers.append((server, thread))
        return Served(settings=chosen, server=server)

    yield make
    for server, thread in servers:
        stop_server(server, thread)
    for process in processes:
        stop_process(process)

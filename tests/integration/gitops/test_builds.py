"""Builds from source (deploy.yaml build:): real repositories pushed over smart HTTP, built in the sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn

from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.git import git, push, work_repo
from tests.harness.processes import serve_in_thread, start_nginx, stop_process, stop_server
from tests.harness.stacks import Served

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

NODE_BUILD = """
const fs = require("fs");
fs.mkdirSync("dist", { recursive: true });
const env = ["DROPHOST_SLOT", "DROPHOST_URL", "DROPHOST_BASE_PATH", "DROPHOST_BRANCH", "DROPHOST_COMMIT",
  "DROPHOST_CONTEXT", "URL", "DEPLOY_URL", "CONTEXT", "BRANCH", "COMMIT_REF", "GREETING"];
const shown = Object.fromEntries(env.map((name) => [name, process.env[name]]));
fs.writeFileSync("dist/index.html", "<h1>built by node</h1>");
fs.writeFileSync("dist/env.json", JSON.stringify(shown));
"""
PACKAGE_JSON = '{"name": "site", "scripts": {"build": "node build.js"}}'


def site_yaml(command: str, output: str = "dist", slot: str = "handbook", **extra: str) -> str:
    lines = [
        "sites:",
        f"  - slot: {slot}",
        "    repo: hosted:handbook",
        "    branch: main",
        "    build:",
        f"      command: {json.dumps(command)}",
        f"      output: {output}",
    ]
    lines += [f"      {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def build_stack(settings: Settings, data_dir: Path) -> Iterator[Callable[..., Served]]:
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


def deployments(served: Served) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = served.api("GET", "/api/deployments").json()["deployments"]
    return rows


def commit_and_push(served: Served, work: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "--allow-empty", "-m", "change", cwd=work)
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    return output


def test_a_node_build_script_is_built_and_served_with_the_platform_variables(
    build_stack: Callable[..., Served], tmp_path: Path
) -> None:
    served = build_stack(site_yaml("node build.js", env="{GREETING: hello}"))
    work = work_repo(tmp_path, {"package.json": PACKAGE_JSON, "build.js": NODE_BUILD})
    code, output = push(work, served.push_url("handbook"), "main")
    assert code == 0, output
    assert f"remote: live at {served.sites_url}/d/handbook/ (version 1)" in output
    assert httpx.get(served.sites_url + "/d/handbook/").text == "<h1>built by node</h1>"
    env = httpx.get(served.sites_url + "/d/handbook/env.json").json()
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    url = f"{served.sites_url}/d/handbook/"
    assert env == {
        "DROPHOST_SLOT": "handbook",
        "DROPHOST_URL": url,
        "DROPHOST_BASE_PATH": "/d/handbook/",
        "DROPHOST_BRANCH": "main",
        "DROPHOST_COMMIT": commit,
        "DROPHOST_CONTEXT": "production",
        "URL": url,
        "DEPLOY_URL": url,
        "CONTEXT": "production",
        "BRANCH": "main",
        "COMMIT_REF": commit,
        "GREETING": "hello",
    }
    (row,) = deployments(served)
    log = served.api("GET", f"/api/deployments/{row['id']}/log")
    assert log.headers["content-type"].startswith("text/plain")
    assert "DropHost: $ /bin/sh -c node build.js" in log.text

"""The container protocol, without containers: nginx under nginx/watcher.sh, the service
asking it (through files in the shared data directory) to validate and reload."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings
from drophost.web.app import create_app
from tests.harness.auth import AUTH
from tests.harness.processes import stop_process
from tests.harness.stacks import Stack
from tests.harness.zips import make_zip

WATCHER = Path(__file__).resolve().parents[2] / "nginx" / "watcher.sh"
PACKAGED_TEMPLATES = Path(__file__).resolve().parents[2] / "nginx"


def _start_watcher(settings: Settings) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["sh", str(WATCHER)],
        env={**os.environ, "DROPHOST_DATA_DIR": str(settings.data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    heartbeat = settings.nginx_dir / "control" / "heartbeat"
    deadline = time.monotonic() + 20
    while not heartbeat.exists():
        assert process.poll() is None, "the watcher exited"
        assert time.monotonic() < deadline, "the watcher did not start"
        time.sleep(0.05)
    return process


@pytest.fixture
def watched_stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    chosen = replace(settings, nginx_control="watcher")
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        watcher = _start_watcher(chosen)
        try:
            yield Stack(settings=chosen, nginx=Nginx(chosen), process=watcher, client=client)
        finally:
            stop_process(watcher)


def test_deploy_and_rollback_through_the_watcher(watched_stack: Stack) -> None:
    stack = watched_stack
    assert stack.client.get("/health").json()["checks"] == {"database": True, "nginx": True}
    assert stack.deploy({"index.html": "one"}, "w").status_code == 201
    assert stack.get("/d/w/").text == "one"
    assert stack.deploy({"index.html": "two"}, "w").json()["config_version"] == 2
    assert stack.get("/d/w/").text == "two"
    rolled = stack.client.post("/api/slots/w/rollback", headers=AUTH)
    assert rolled.json() == {"slot": "w", "active": 1}
    assert stack.get("/d/w/").text == "one"
    requests = stack.settings.nginx_dir / "control" / "requests"
    assert list(requests.iterdir()) == []
    assert list((stack.settings.nginx_dir / "control" / "results").iterdir()) == []


def test_a_config_the_watcher_rejects_never_goes_live(settings: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(PACKAGED_TEMPLATES, templates)
    chosen = replace(settings, nginx_control="watcher", nginx_template_dir=str(templates))
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        watcher = _start_watcher(chosen)
        try:
            stack = Stack(settings=chosen, nginx=None, process=watcher, client=client)  # type: ignore[arg-type]
            assert stack.deploy({"index.html": "good"}, "r").status_code == 201
            (templates / "site.conf.j2").write_text('{{ slot }} "{{ version }}:{{ release_dir }}" extra;\n')
            refused = stack.deploy({"index.html": "bad"}, "r")
            assert refused.status_code == 500
            assert "nginx rejected" in refused.json()["error"]
            assert "/" not in refused.json().get("nginx", "").replace("<path>", "")
            assert stack.get("/d/r/").text == "good"
            versions = client.get("/api/slots/r/versions", headers=AUTH).json()
            assert [v["status"] for v in versions["versions"]] == ["failed", "active"]
        finally:
            stop_process(watcher)


def test_without_a_watcher_the_service_says_nginx_is_down(settings: Settings) -> None:
    chosen = replace(settings, nginx_control="watcher", subprocess_timeout=1.0)
    with TestClient(create_app(chosen), raise_server_exceptions=False) as client:
        health = client.get("/health")
        assert health.status_code == 503 and "nginx" in health.json()["error"]
        answer = client.post(
            "/api/deployments",
            files={"file": ("x.zip", make_zip({"index.html": "x"}), "application/zip")},
            data={"slot": "x"},
            headers=AUTH,
        )
        assert answer.status_code == 500 and "did not answer" in answer.json()["error"]

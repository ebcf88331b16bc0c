"""End to end with Docker Compose: build, up, deploy, roll back, down, up, everything still there;
a git push of a Hugo site built in the builder container.

Talks to the containers only through nginx's port published on 127.0.0.1. Skipped (with the
reason) only when no Docker engine can be started on this machine at all.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.harness.git import push, work_repo
from tests.harness.ports import free_port
from tests.harness.zips import make_zip

ROOT = Path(__file__).resolve().parents[2]
# One project per run: two runs on one machine (two checkouts) must not share networks or volumes.
PROJECT = f"drophost-e2e-{os.getpid()}"
ENGINE_UNAVAILABLE = 77


def _run(*argv: str, timeout: float = 900, check: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        list(argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env or _docker_env()
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def _docker_env() -> dict[str, str]:
    # No buildx here: Compose builds through the engine's own BuildKit, without its Bake warning.
    return {**os.environ, "COMPOSE_BAKE": "false"}


@pytest.fixture(scope="module")
def engine() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "docker-env"), "all"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode == ENGINE_UNAVAILABLE:
        pytest.skip(f"no Docker engine can be started here: {result.stderr.strip().splitlines()[-1:]}")
    assert result.returncode == 0, result.stderr[-3000:]


class Compose:
    def __init__(self, env_file: Path, port: int, sites_port: int) -> None:
        self.env_file = env_file
        self.port = port
        self.sites_port = sites_port

    def __call__(self, *args: str, timeout: float = 900) -> str:
        return _run(
            "docker",
            "compose",
            "-p",
            PROJECT,
            "-f",
            "compose.yaml",
            "-f",
            "compose.test.yaml",
            "--env-file",
            str(self.env_file),
            *args,
            timeout=timeout,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sites(self) -> str:
        return f"http://127.0.0.1:{self.sites_port}"


@pytest.fixture(scope="module")
def compose(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    port, sites_port = free_port(), free_port()
    env_file = tmp_path_factory.mktemp("compose") / "e2e.env"
    env_file.write_text(
        f"POSTGRES_PASSWORD={secrets.token_hex(16)}\nDROPHOST_API_TOKEN={secrets.token_hex(16)}\n"
        f"DROPHOST_PUBLIC_PORT={port}\nDROPHOST_PUBLIC_URL=http://127.0.0.1:{port}\n"
        f"DROPHOST_SITES_PUBLIC_PORT={sites_port}\nDROPHOST_SITES_URL=http://127.0.0.1:{sites_port}\n"
    )
    run = Compose(env_file, port, sites_port)
    run("down", "-v", "--remove-orphans", timeout=300)
    try:
        run("build")
        try:
            run("up", "-d", "--wait", "--wait-timeout", "240")
        except AssertionError as exc:
            logs = subprocess.run(
                [
                    "docker",
                    "compose",
                    "-p",
                    PROJECT,
                    "-f",
                    "compose.yaml",
                    "-f",
                    "compose.test.yaml",
                    "--env-file",
                    str(env_file),
                    "logs",
                    "--no-color",
                    "--tail",
                    "60",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            raise AssertionError(f"{exc}\n--- logs ---\n{logs.stdout[-6000:]}") from None
        yield run
    finally:
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                PROJECT,
                "-f",
                "compose.yaml",
                "-f",
                "compose.test.yaml",
                "--env-file",
                str(env_file),
                "down",
                "-v",
                "--remove-orphans",
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )


def _token(compose: Compose) -> dict[str, str]:
    token = next(
        line.split("=", 1)[1]
        for line in compose.env_file.read_text().splitlines()
        if line.startswith("DROPHOST_API_TOKEN=")
    )
    return {"Authorization": f"Bearer {token}"}


def _deploy(compose: Compose, text: str) -> httpx.Response:
    return httpx.post(
        f"{compose.url}/api/deployments",
        files={"file": ("site.zip", make_zip({"site/index.html": text, "site/app.js": "x"}), "application/zip")},
        data={"slot": "e2e"},
        headers=_token(compose),
        timeout=60,
    )


def _wait_healthy(compose: Compose) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{compose.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the stack did not become healthy"
        time.sleep(1)


def test_compose_stack_deploys_rolls_back_and_keeps_everything_across_down_and_up(compose: Compose) -> None:
    _wait_healthy(compose)
    first = _deploy(compose, "<h1>one</h1>")
    assert first.status_code == 201, first.text
    assert first.json()["path_url"] == f"{compose.sites}/d/e2e/"
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>one</h1>"
    second = _deploy(compose, "<h1>two</h1>")
    assert second.status_code == 201 and second.json()["config_version"] == 2
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>two</h1>"
    rolled = httpx.post(f"{compose.url}/api/slots/e2e/rollback", json={"version": 1}, headers=_token(compose))
    assert rolled.json() == {"slot": "e2e", "active": 1}
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>one</h1>"

    # A config nginx rejects never goes live, and bad input changes nothing.
    bad = httpx.post(
        f"{compose.url}/api/deployments",
        files={"file": ("x.zip", b"not a zip", "application/zip")},
        data={"slot": "e2e"},
        headers=_token(compose),
    )
    assert bad.status_code == 422
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>one</h1>"

    # The database is reachable only on the internal network, and publishes nothing.
    db_id = compose("ps", "-q", "db").strip()
    db = json.loads(_run("docker", "inspect", db_id))[0]
    networks = list(db["NetworkSettings"]["Networks"])
    assert networks == [f"{PROJECT}_internal"]
    assert not any(db["NetworkSettings"]["Ports"].values() or [])
    internal = json.loads(_run("docker", "network", "inspect", f"{PROJECT}_internal"))[0]
    assert internal["Internal"] is True
    service = json.loads(_run("docker", "inspect", compose("ps", "-q", "service").strip()))[0]
    assert service["Config"]["User"] not in ("", "0", "root")
    assert service["HostConfig"]["ReadonlyRootfs"] is True
    assert "ALL" in service["HostConfig"]["CapDrop"]
    assert not any("docker.sock" in m.get("Source", "") for c in (db, service) for m in c["Mounts"])
    # The git sources need git (and git http-backend for hosted repositories) and ssh in the image.
    check = 'git --version && test -x "$(git --exec-path)/git-http-backend" && ssh -V 2>&1'
    tools = compose("exec", "-T", "service", "sh", "-c", check)
    assert "git version" in tools and "OpenSSH" in tools

    before = httpx.get(f"{compose.url}/api/deployments", headers=_token(compose)).json()
    versions = httpx.get(f"{compose.url}/api/slots/e2e/versions", headers=_token(compose)).json()

    compose("down", timeout=300)  # volumes kept
    compose("up", "-d", "--wait", "--wait-timeout", "240")
    _wait_healthy(compose)
    assert httpx.get(f"{compose.url}/api/deployments", headers=_token(compose)).json() == before
    assert httpx.get(f"{compose.url}/api/slots/e2e/versions", headers=_token(compose)).json() == versions
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>one</h1>"
    again = httpx.post(f"{compose.url}/api/slots/e2e/rollback", json={"version": 2}, headers=_token(compose))
    assert again.status_code == 200
    assert httpx.get(f"{compose.sites}/d/e2e/").text == "<h1>two</h1>"


def test_a_pushed_hugo_site_is_built_in_the_builder_container_and_served(compose: Compose, tmp_path: Path) -> None:
    _wait_healthy(compose)
    token = _token(compose)["Authorization"].removeprefix("Bearer ")
    work = work_repo(
        tmp_path,
        {
            "hugo.toml": 'title = "Docs"\n',
            "content/_index.md": "---\ntitle: Home\n---\nBuilt *under Compose*.\n",
            "layouts/index.html": "<title>{{ .Site.Title }}</title>{{ .Content }}",
        },
    )
    code, output = push(work, f"http://pusher:{token}@127.0.0.1:{compose.port}/git/docs.git", "main")
    assert code == 0, output
    assert f"remote: live at {compose.sites}/d/docs/ (version 1)" in output, output
    page = httpx.get(f"{compose.sites}/d/docs/").text
    assert "<title>Docs</title>" in page and "<em>under Compose</em>" in page
    rows = httpx.get(f"{compose.url}/api/deployments", headers=_token(compose)).json()["deployments"]
    built = next(row for row in rows if row["slot"] == "docs")
    log = httpx.get(f"{compose.url}/api/deployments/{built['id']}/log", headers=_token(compose)).text
    assert 'hugo --baseURL "$DROPHOST_URL"' in log and "Pages" in log

    # The builder: no capability, a read-only root, an unprivileged user, no Docker socket, and of
    # the data only the builds volume (no releases, no database, no token in its environment).
    builder = json.loads(_run("docker", "inspect", compose("ps", "-q", "builder").strip()))[0]
    assert builder["Config"]["User"] not in ("", "0", "root")
    assert builder["HostConfig"]["ReadonlyRootfs"] is True
    assert "ALL" in builder["HostConfig"]["CapDrop"] and not builder["HostConfig"]["CapAdd"]
    assert "no-new-privileges:true" in builder["HostConfig"]["SecurityOpt"]
    assert [m["Destination"] for m in builder["Mounts"]] == ["/var/lib/drophost/builds"]
    assert not any("TOKEN" in item or "DATABASE" in item for item in builder["Config"]["Env"])
    assert sorted(builder["NetworkSettings"]["Networks"]) == [f"{PROJECT}_builds", f"{PROJECT}_outbound"]
    # Inside a build: neither the service nor any data directory.
    work = work_repo(tmp_path / "probe", {"README": "probe"})
    code, output = push(work, f"http://pusher:{token}@127.0.0.1:{compose.port}/git/probe.git", "main")
    assert "(version 1)" in output, output
    assert httpx.get(f"{compose.sites}/d/probe/").text.split() == ["no", "service", "no", "data"]
    # The service itself cannot make a sandbox (that is why the builder exists) and has none to try.
    assert "bwrap" not in compose("exec", "-T", "service", "sh", "-c", "command -v bwrap || echo none")

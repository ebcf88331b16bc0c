"""`drophost up` itself: the whole stack from one command, and nothing left running after SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from drophost.localdb import LocalPostgres
from tests.conftest import free_port
from tests.zipcraft import std_zip


def read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def children_of(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == parent:
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid for {pid}")


def processes_using(folder: Path) -> list[str]:
    """Every running process whose command line names the folder."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline:
                found.append(f"{entry}: {cmdline}")
    return found


@pytest.fixture
def up_data_dir(scratch_root: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="up-", dir=scratch_root))
    os.chmod(path, 0o755)
    yield path
    # If the test failed half-way, nginx and the private cluster may still run: stop them.
    nginx_pid = path / "nginx" / "nginx.pid"
    if nginx_pid.exists() and alive(read_pid(nginx_pid)):
        os.kill(read_pid(nginx_pid), signal.SIGQUIT)
    if (path / "postgres" / "data" / "postmaster.pid").exists():
        LocalPostgres(path / "postgres", run_as="drophost").stop()
    shutil.rmtree(path, ignore_errors=True)


def serve_a_site(
    client: httpx.Client, base: str, sites: str, up: subprocess.Popen[bytes], data: Path, log_path: Path
) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert up.poll() is None, log_path.read_text()
        try:
            if client.get(f"{base}/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)

    token = (data / "api-token").read_text().strip()
    assert len(token) >= 32 and token in log_path.read_text()
    assert (data / "api-token").stat().st_mode & 0o077 == 0
    assert client.get(f"{base}/api/slots").status_code == 401

    files = {"site/index.html": b"<h1>hello from up</h1>", "site/logo.png": os.urandom(10_000)}
    response = client.post(
        f"{base}/api/deployments",
        files={"file": ("hello.zip", std_zip(dict(files)), "application/zip")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["url"] == f"{sites}/d/hello/"
    assert client.get(f"{sites}/d/hello/").content == files["site/index.html"]
    assert client.get(f"{sites}/d/hello/logo.png").content == files["site/logo.png"]
    # The main port sends old /d/ links to the sites origin.
    assert client.get(f"{base}/d/hello/").status_code == 302
    assert client.get(f"{base}/api/openapi.json").json()["openapi"].startswith("3.")


@pytest.mark.slow
def test_drophost_up_serves_a_site_and_stops_every_child(up_data_dir: Path, tmp_path: Path) -> None:
    port, sites_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPHOST_") and k != "DATABASE_URL"}
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drophost",
                "up",
                "--data-dir",
                str(up_data_dir),
                "--port",
                str(port),
                "--sites-port",
                str(sites_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        with httpx.Client(timeout=30, trust_env=False) as client:
            serve_a_site(
                client, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sites_port}", up, up_data_dir, log_path
            )

        nginx_master = read_pid(up_data_dir / "nginx" / "nginx.pid")
        postmaster = read_pid(up_data_dir / "postgres" / "data" / "postmaster.pid")
        children = {up.pid, nginx_master, postmaster} | children_of(nginx_master) | children_of(postmaster)
        assert len(children) >= 5
        if os.geteuid() == 0:
            # As root, PostgreSQL and the nginx workers run unprivileged.
            assert uid_of(postmaster) != 0
            assert all(uid_of(pid) != 0 for pid in children_of(nginx_master))

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 128 + signal.SIGTERM, log_path.read_text()
        assert "stopping PostgreSQL" in log_path.read_text()
        assert sorted(pid for pid in children if alive(pid)) == []
        assert processes_using(up_data_dir) == []
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()

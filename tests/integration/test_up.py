from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.harness.auth import TOKEN
from tests.harness.ports import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_healthy(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "drophost up exited at start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("drophost up did not become healthy")


def test_sigterm_stops_nginx_and_postgres(data_dir: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"DROPHOST_API_TOKEN": TOKEN}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drophost",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--sites-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    children: list[tuple[int, signal.Signals]] = []
    try:
        _wait_healthy(process, port)
        nginx_pid = int((data_dir / "nginx" / "nginx.pid").read_text())
        postgres_pid = int((data_dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        children = [(nginx_pid, signal.SIGQUIT), (postgres_pid, signal.SIGTERM)]
        assert _alive(nginx_pid) and _alive(postgres_pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        assert not _alive(nginx_pid)
        assert not _alive(postgres_pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid, how in children:  # only if the assertions above failed
            if _alive(pid):
                os.kill(pid, how)

"""`drophost up` as a real child process: a throwaway data dir, free ports, its log, and its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from tests.harness.ports import free_port


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


@dataclass
class Up:
    """A running `drophost up` and where to reach it."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    port: int
    sites_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sites_url(self) -> str:
        return f"http://127.0.0.1:{self.sites_port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def push_url(self, name: str) -> str:
        return f"http://pusher:{self.token}@127.0.0.1:{self.port}/git/{name}.git"

    def wait_healthy(self, client: httpx.Client) -> None:
        """Poll /health until it answers 200 (the deadline is a bound, not a timed assertion)."""
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, self.log()
            try:
                if client.get(f"{self.base_url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def children(self) -> set[int]:
        """This process, nginx and PostgreSQL with their workers."""
        nginx_master = read_pid(self.data_dir / "nginx" / "nginx.pid")
        postmaster = read_pid(self.data_dir / "postgres" / "data" / "postmaster.pid")
        return {self.process.pid, nginx_master, postmaster} | children_of(nginx_master) | children_of(postmaster)

    def stop(self) -> None:
        """SIGTERM, then check that every child is gone."""
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 128 + signal.SIGTERM, self.log()
        assert "stopping PostgreSQL" in self.log()
        assert sorted(pid for pid in children if alive(pid)) == []
        assert processes_using(self.data_dir) == []


@contextmanager
def running_up(data_dir: Path, log_path: Path, *args: str, environ: dict[str, str] | None = None) -> Iterator[Up]:
    """Start `drophost up` on free ports with a clean environment (plus `environ`); kill its group if
    the test did not stop it."""
    port, sites_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPHOST_") and k != "DATABASE_URL"}
    env.update(environ or {})
    argv = [sys.executable, "-m", "drophost", "up", "--data-dir", str(data_dir)]
    argv += ["--port", str(port), "--sites-port", str(sites_port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        yield Up(process, data_dir, log_path, port, sites_port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

"""Real stacks for the benchmarks: `drophost up` as a subprocess, and a minimal hand-written nginx.

Nothing here is mocked: PostgreSQL, nginx and the service run exactly as `drophost up` runs them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from tests.harness.ports import free_port

from bench import client
from drophost import runner
from drophost.pipeline.nginxconfig import worker_user_directive


class DropHostStack:
    """`drophost up --data-dir <tmp> --port <free>`: private PostgreSQL, nginx, and uvicorn behind it."""

    def __init__(self, work_dir: Path, *, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.data_dir = work_dir / "drophost"
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self.log_path = work_dir / "drophost-up.log"
        self.port = free_port()
        # Sites are served on their own origin: /d/ on the main port only redirects there.
        self.sites_port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self._children: list[tuple[int, signal.Signals]] = []

    def check_served(self, slot: str, deployment_id: int) -> None:
        """After a 201: nginx answers for the slot, through a link to that deployment's release."""
        if client.header_of(self.sites_port, f"/d/{slot}/", "X-Drophost-Slot") != slot:
            raise RuntimeError(f"nginx does not serve slot {slot}")
        target = os.readlink(self.data_dir / "live" / slot)
        if target != f"../releases/{slot}/{deployment_id}":
            raise RuntimeError(f"201 for deployment {deployment_id} of {slot}, but its link leads to {target}")

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "DROPHOST_API_TOKEN": self.token, **self.extra_env}
        env.pop("DATABASE_URL", None)
        argv = [sys.executable, "-m", "drophost", "up", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        argv += ["--sites-port", str(self.sites_port), *self.extra_args]
        with open(self.log_path, "wb") as log:
            # Its own session: the bench decides when it stops, and a Ctrl-C reaches it only through us.
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        healthy = client.wait_for(self._healthy, timeout=timeout, interval=0.1)
        if not healthy:
            raise RuntimeError(f"drophost up did not become healthy; its output:\n{self.log_tail()}")
        # Remembered so that stop() can end them should `drophost up` fail to (by pid, nothing broader).
        nginx_pid = _pid_from(self.data_dir / "nginx" / "nginx.pid")
        postgres_pid = _pid_from(self.data_dir / "postgres" / "data" / "postmaster.pid")
        self._children = [
            (pid, how) for pid, how in ((nginx_pid, signal.SIGQUIT), (postgres_pid, signal.SIGINT)) if pid
        ]

    def _healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"drophost up exited; its output:\n{self.log_tail()}")
        try:
            return client.request(self.port, "GET", "/health", timeout=5).status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def service_pid(self) -> int:
        """The process that runs uvicorn: `drophost up` itself, or its Python child if it forks one."""
        assert self.process is not None
        found = [pid for pid in process_tree(self.process.pid) if _is_python(pid)]
        if not found:
            raise RuntimeError("the service process is gone")
        return found[-1]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        left = [(pid, how) for pid, how in self._children if _alive(pid)]
        for pid, how in left:
            print(f"bench: drophost up left process {pid} running; stopping it", file=sys.stderr)
            os.kill(pid, how)
        client.wait_for(lambda: not any(_alive(pid) for pid, _ in left), timeout=30, interval=0.05)

    def __enter__(self) -> DropHostStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PlainNginx:
    """The baseline: a minimal nginx serving directories, switched by rewriting a file and `nginx -s reload`."""

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir / "plain-nginx"
        self.sites_dir = self.root / "sites"
        self.conf_path = self.root / "nginx.conf"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _command(self, *args: str) -> list[str]:
        return ["nginx", "-e", str(self.root / "error.log"), "-c", str(self.conf_path), *args]

    def start(self) -> None:
        self.sites_dir.mkdir(parents=True)
        (self.root / "tmp").mkdir()
        os.chmod(self.root / "tmp", 0o777)
        user = f"user {worker_user_directive('nobody')};\n" if os.geteuid() == 0 else ""
        mime_types = resources.files("drophost.nginx_templates").joinpath("mime.types")
        tmp = self.root / "tmp"
        self.conf_path.write_text(
            f"{user}worker_processes auto;\ndaemon off;\npid {self.root}/nginx.pid;\n"
            f"error_log {self.root}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n  include {mime_types};\n  default_type application/octet-stream;\n  sendfile on;\n"
            # A config written by hand logs its requests (nginx's default), as DropHost does for its
            # analytics: both buffered alike, so a side by side compares what each does per request.
            f"  access_log {self.root}/access.log combined buffer=64k flush=1s;\n"
            f"  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n"
            f"  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n"
            f"  server {{\n    listen {client.HOST}:{self.port};\n    include {self.sites_dir}/*.conf;\n  }}\n}}\n"
        )
        runner.run(self._command("-t", "-q"), timeout=30)
        log = open(self.root / "stderr.log", "wb")  # handed to the child
        self.process = subprocess.Popen(self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if not client.wait_for(lambda: _accepts(self.port), timeout=10, interval=0.02):
            raise RuntimeError("the baseline nginx did not start listening")

    def set_site(self, name: str, directory: Path, release: int, *, clean_urls: bool = False) -> None:
        """Serve `directory` at /s/<name>/, answering X-Release: <release>; with `clean_urls`, /about
        serves about.html as a person writes it (try_files), for a side by side with DropHost's."""
        lookup = "  try_files $uri $uri.html $uri/ =404;\n" if clean_urls else ""
        text = (
            f"location ^~ /s/{name}/ {{\n  alias {directory}/;\n  index index.html;\n{lookup}"
            f'  add_header X-Release "{release}" always;\n}}\n'
        )
        tmp = self.sites_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.sites_dir / f"{name}.conf")

    def reload(self) -> None:
        runner.run(self._command("-s", "reload"), timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> PlainNginx:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_tree(root: int) -> list[int]:
    """`root` and its descendants, parents before children (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    ordered, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        ordered.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return ordered


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and friends of one process, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Vm"):
                name, _, value = line.partition(":")
                found[name] = int(value.split()[0])
    return found


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _is_python(pid: int) -> bool:
    try:
        return "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((client.HOST, port), timeout=0.5):
            return True
    except OSError:
        return False

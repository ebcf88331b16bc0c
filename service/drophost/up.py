"""`drophost up`: PostgreSQL, nginx and the service on one machine, no Docker, in the foreground."""

from __future__ import annotations

import dataclasses
import grp
import logging
import os
import pwd
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import uvicorn

from drophost import hangup, runner
from drophost.errors import CommandError
from drophost.localdb import LocalPostgres, demote_to
from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings
from drophost.web.app import create_app

log = logging.getLogger(__name__)
SERVICE_USER = "drophost"


def up(settings: Settings) -> int:
    """Run the whole stack until Ctrl-C or SIGTERM; every child is stopped on the way out."""
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default handler that
    # would kill this process before the `finally` below stops nginx and PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Until the service handles SIGHUP (and again once it has stopped), SIGHUP's default action would
    # kill this process and leave nginx and PostgreSQL running without it; one that comes while
    # starting is applied once the service is up (hangup.py).
    signal.signal(signal.SIGHUP, hangup.remember)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o755)
    child_user: str | None = None
    if os.geteuid() == 0:
        # Only this preparation needs root; the rest runs as an unprivileged user where it can.
        ensure_service_user(settings.data_dir)
        if interpreter_usable_by(SERVICE_USER):
            drop_root(settings.data_dir)
        else:
            # e.g. Python installed under /root: the service keeps root, but PostgreSQL and the
            # nginx workers still run as the service user.
            child_user = SERVICE_USER
            print(
                f"drophost: {sys.executable} is not readable by {SERVICE_USER!r}; the service process "
                f"keeps root, PostgreSQL and nginx workers run as {SERVICE_USER!r}",
                flush=True,
            )
    # A token DropHost made (or made earlier and kept) is shown once it is up: nobody else knows it.
    token_from_file = not settings.api_token
    token = settings.api_token or load_or_create_token(settings.data_dir)
    postgres: LocalPostgres | None = None
    nginx_proc: subprocess.Popen[bytes] | None = None
    # Everything started from here on is stopped in the finally, also when SIGTERM comes during start.
    try:
        database_url = settings.database_url
        if not database_url:
            postgres = LocalPostgres(settings.data_dir / "postgres", run_as=child_user)
            print("drophost: starting PostgreSQL in", postgres.root, flush=True)
            database_url = postgres.start()
        run_dir = settings.data_dir / "run"
        run_dir.mkdir(exist_ok=True)
        socket_path = settings.service_socket or str(run_dir / "service.sock")
        settings = dataclasses.replace(
            settings,
            api_token=token,
            database_url=database_url,
            service_socket=socket_path,
            nginx_worker_user=child_user or settings.nginx_worker_user,
        )
        nginx = Nginx(settings)
        nginx.prepare()
        nginx_proc = nginx.start()
        print(f"drophost: nginx serving on http://{settings.host}:{settings.port}/", flush=True)
        if token_from_file:
            print(f"drophost: API token (kept in {settings.data_dir / 'api-token'}): {token}", flush=True)
        print(
            f"drophost: dashboard http://{settings.host}:{settings.port}/  sites {settings.site_base_url}/d/<slot>/",
            flush=True,
        )
        Path(socket_path).unlink(missing_ok=True)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), uds=socket_path, log_level="info", lifespan="on", access_log=False)
        )
        server.run()
        return 0 if server.started else 1
    finally:
        if nginx_proc is not None and nginx_proc.poll() is None:
            nginx_proc.send_signal(signal.SIGQUIT)
            try:
                nginx_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx_proc.kill()
        if postgres is not None:
            print("drophost: stopping PostgreSQL", flush=True)
            postgres.stop()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def load_or_create_token(data_dir: Path) -> str:
    path = data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def ensure_service_user(data_dir: Path) -> None:
    """Create the service user if needed and hand it the data directory."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        runner.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(data_dir),
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            timeout=30,
        )
        entry = pwd.getpwnam(SERVICE_USER)
    for folder, dirs, files in os.walk(data_dir):
        os.lchown(folder, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)


def interpreter_usable_by(user: str) -> bool:
    """Can `user` run this Python and import drophost? (Not when Python lives under /root.)"""
    try:
        result = runner.run(
            [sys.executable, "-c", "import drophost.app, uvicorn, psycopg"],
            timeout=60,
            check=False,
            preexec_fn=demote_to(user),
            cwd=Path("/"),
        )
    except CommandError:
        return False
    return result.returncode == 0


def drop_root(data_dir: Path) -> None:
    """Become the service user for the rest of the process."""
    entry = pwd.getpwnam(SERVICE_USER)
    groups = [g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem]
    os.setgroups(groups)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = str(data_dir)
    os.environ["USER"] = SERVICE_USER
    print(f"drophost: running as the unprivileged user {SERVICE_USER!r}", flush=True)

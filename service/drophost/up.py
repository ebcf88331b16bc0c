"""`drophost up`: PostgreSQL, nginx and the service on one machine, no Docker, in the foreground."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from drophost import runner
from drophost.accounts import DB_USER, ROOT, SERVICE_USER, WEB_USER, Accounts, apply_ownership, ensure_accounts
from drophost.errors import CommandError, SettingsError
from drophost.localdb import LocalPostgres, demote_to
from drophost.pipeline import nginxprocess
from drophost.pipeline.nginx import Nginx
from drophost.processes import STATE_FILE, Supervisor, become_subreaper, die_with_parent, hold_lock, stop_leftover
from drophost.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)


def up(settings: Settings) -> int:
    """Run the whole stack until Ctrl-C or SIGTERM; every child is stopped on the way out.

    This process supervises: PostgreSQL, nginx and the service are its children, each set to die
    with it; the service is started again whenever it dies on its own.
    """
    # SIGTERM ends the supervisor through the `finally` below, which stops every child in order.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # SIGHUP (apply deploy.yaml again) goes to the service once it answers; its default action
    # would kill this process and orphan its children.
    supervisor = Supervisor(run_dir=settings.data_dir / "run")
    signal.signal(signal.SIGHUP, lambda signum, frame: supervisor.hangup())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o755)
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(exist_ok=True)
    lock = hold_lock(run_dir / "up.lock")
    become_subreaper()
    if lock is None:
        raise SettingsError(f"another `drophost up` is running with the data directory {settings.data_dir}")
    stop_leftovers(settings)
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # restarts are counted per run of `drophost up`
    accounts: Accounts | None = None
    service_demote: Callable[[], None] | None = None
    if os.geteuid() == 0:
        # Only the supervisor keeps root (to run nginx's master and stop its children); everything
        # else runs as a user of its own (accounts.py).
        accounts = ensure_accounts(settings.data_dir)
        if accounts.created:
            print(
                f"drophost: created the system users {', '.join(accounts.created)} (no login shell, no home "
                f"folder): {SERVICE_USER!r} runs the service, {WEB_USER!r} nginx's workers, {DB_USER!r} PostgreSQL",
                flush=True,
            )
        if interpreter_usable_by(SERVICE_USER):
            service_demote = demote_to(SERVICE_USER)
        else:
            # Said once, with what to do: a virtual environment under /root is the usual cause.
            print(
                f"drophost: the service runs as root, because {SERVICE_USER!r} cannot read this Python "
                f"({sys.executable}); install DropHost where every user can read it (for example a "
                f"virtual environment under /opt) to run it as {SERVICE_USER!r}. PostgreSQL runs as "
                f"{DB_USER!r} and nginx's workers as {WEB_USER!r} either way",
                flush=True,
            )
    # A token DropHost made (or made earlier and kept) is shown once it is up: nobody else knows it.
    token_from_file = not settings.api_token
    token = settings.api_token or load_or_create_token(settings.data_dir)
    postgres: LocalPostgres | None = None
    postgres_proc: subprocess.Popen[bytes] | None = None
    nginx_proc: subprocess.Popen[bytes] | None = None
    # Everything started from here on is stopped in the finally, also when SIGTERM comes during start.
    try:
        if accounts is not None:
            apply_ownership(settings.data_dir, accounts.service if service_demote else ROOT, accounts.db)
        database_url = settings.database_url
        if not database_url:
            postgres = LocalPostgres(
                settings.data_dir / "postgres",
                run_as=accounts.db.name if accounts else None,
                client_group=accounts.service.group if accounts and service_demote else None,
            )
            print("drophost: starting PostgreSQL in", postgres.root, flush=True)
            postgres_proc = postgres.spawn(die_with_parent(signal.SIGINT, demote_to(postgres.run_as)))
            database_url = postgres.dsn
        socket_path = settings.service_socket or str(run_dir / "service.sock")
        settings = dataclasses.replace(
            settings,
            api_token=token,
            database_url=database_url,
            service_socket=socket_path,
            nginx_worker_user=WEB_USER if accounts else settings.nginx_worker_user,
            # A service without root cannot signal a master that has it: nginx is then run by the
            # watcher (as in the containers), which the service asks through files to test and reload.
            nginx_control="watcher" if service_demote else settings.nginx_control,
        )
        nginx = Nginx(settings)
        nginx.prepare()
        if accounts is not None:
            apply_ownership(settings.data_dir, accounts.service if service_demote else ROOT, accounts.db)
        if settings.nginx_control == "watcher":
            nginx_proc = start_watcher(settings)
        else:
            nginx_proc = nginx.start(preexec_fn=die_with_parent(signal.SIGQUIT))
        print(f"drophost: nginx serving on {settings.scheme}://{settings.host}:{settings.port}/", flush=True)
        if token_from_file:
            print(f"drophost: API token (kept in {settings.data_dir / 'api-token'}): {token}", flush=True)
        dashboard = f"{settings.scheme}://{settings.host}:{settings.port}/"
        print(f"drophost: dashboard {dashboard}  sites {settings.site_base_url}/d/<slot>/", flush=True)
        supervisor.owner = accounts.service.uid if accounts and service_demote else None
        supervisor.ready = lambda: _accepts_unix(socket_path)
        supervisor.keep = {proc.pid for proc in (nginx_proc, postgres_proc) if proc is not None}
        return supervisor.run(lambda: start_service(settings, service_demote))
    finally:
        supervisor.stop()
        supervisor.wait_stopped()
        if nginx_proc is not None and nginx_proc.poll() is None:
            nginx_proc.send_signal(signal.SIGTERM if settings.nginx_control == "watcher" else signal.SIGQUIT)
            try:
                nginx_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                nginx_proc.kill()
        if postgres is not None:
            print("drophost: stopping PostgreSQL", flush=True)
            if postgres_proc is not None and postgres_proc.poll() is None:
                postgres_proc.send_signal(signal.SIGINT)  # a fast shutdown
                try:
                    postgres_proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    postgres_proc.kill()
                    postgres_proc.wait()
        lock.close()


def start_service(settings: Settings, demote: Callable[[], None] | None) -> subprocess.Popen[bytes]:
    """The service (uvicorn on its unix socket) as a child that dies with this process."""
    Path(settings.service_socket).unlink(missing_ok=True)
    env = {**os.environ, **settings_env(settings)}
    if demote is not None:
        env.update(HOME=str(settings.data_dir), USER=SERVICE_USER)

    def prepare() -> None:
        # Ignored until the service installs its own handler: an early SIGHUP must not kill it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if demote is not None:
            demote()

    argv = [sys.executable, "-m", "drophost", "serve", "--uds", settings.service_socket]
    return subprocess.Popen(argv, env=env, cwd="/", preexec_fn=die_with_parent(signal.SIGTERM, prepare))


def start_watcher(settings: Settings) -> subprocess.Popen[bytes]:
    """nginx under its watcher (nginx/watcher.sh, as in the containers), as a child that dies with us."""
    script = resources.files("drophost.nginx_templates").joinpath("watcher.sh")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "DROPHOST_DATA_DIR": str(settings.data_dir),
        "NGINX_BINARY": settings.nginx_binary,
    }
    with open(settings.nginx_dir / "nginx.stderr", "ab") as log:
        process = runner.start(["sh", str(script)], output=log, env=env, preexec_fn=die_with_parent(signal.SIGTERM))
    heartbeat = settings.nginx_dir / "control" / "heartbeat"
    deadline = time.monotonic() + 20
    while not (heartbeat.exists() and nginxprocess.accepts(settings.host, settings.port)):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SettingsError("nginx did not start; see nginx/nginx.stderr and nginx/error.log in the data directory")
        time.sleep(0.05)
    return process


def stop_leftovers(settings: Settings) -> None:
    """Stop what an earlier run left running (it was killed before it could), found by our pid files."""
    marker = str(settings.data_dir)
    stop_leftover(settings.data_dir / "run" / "service.pid", marker, signal.SIGTERM)
    stop_leftover(settings.nginx_dir / "nginx.pid", marker, signal.SIGQUIT)
    stop_leftover(settings.data_dir / "postgres" / "data" / "postmaster.pid", marker, signal.SIGINT, wait=60)


def settings_env(settings: Settings) -> dict[str, str]:
    """The DROPHOST_* variables that give a child process exactly these settings."""
    values: dict[str, str] = {}
    for spec in dataclasses.fields(settings):
        value = getattr(settings, spec.name)
        if isinstance(value, bool):
            values[ENV_PREFIX + spec.name.upper()] = "1" if value else "0"
        else:
            values[ENV_PREFIX + spec.name.upper()] = str(value)
    return values


def _accepts_unix(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


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


def interpreter_usable_by(user: str) -> bool:
    """Can `user` run this Python and import drophost? (Not when Python lives under /root.)"""
    try:
        result = runner.run(
            [sys.executable, "-c", "import drophost.web.app, uvicorn, psycopg"],
            timeout=60,
            check=False,
            preexec_fn=demote_to(user),
            cwd=Path("/"),
        )
    except CommandError:
        return False
    return result.returncode == 0

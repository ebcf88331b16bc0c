"""A private PostgreSQL cluster inside the data directory, for `drophost up` and the tests."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from drophost import runner
from drophost.errors import SettingsError

DATABASE = "drophost"
SUPERUSER = "drophost"
# Unix socket paths are limited to 107 bytes; ".s.PGSQL.NNNNN" is added to the directory.
_MAX_SOCKET_DIR = 90


def postgres_bin_dir() -> Path:
    """The newest installed server binaries (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise SettingsError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def demote_to(user: str | None) -> Callable[[], None] | None:
    """A preexec function that drops root to `user` in the child (None when not needed)."""
    if user is None or os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


class LocalPostgres:
    def __init__(
        self, root: Path, *, run_as: str | None = None, port: int = 5432, client_group: str | None = None
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.run_as = run_as if os.geteuid() == 0 else None
        # With its own user, the cluster lets one group (the service's) reach its socket, nobody else.
        self.client_group = client_group if self.run_as else None
        self.bin = postgres_bin_dir()
        socket_dir = root / "run"
        if len(str(socket_dir)) > _MAX_SOCKET_DIR:
            socket_dir = Path(tempfile.mkdtemp(prefix="drophost-pg-"))
        self.socket_dir = socket_dir

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={DATABASE}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        runner.run(list(argv), timeout=timeout, preexec_fn=demote_to(self.run_as), cwd=Path("/"))

    def _own(self, path: Path) -> None:
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def ensure_initialised(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        self._own(self.socket_dir)
        if self.client_group:
            os.chown(self.socket_dir, -1, grp.getgrnam(self.client_group).gr_gid)
            os.chmod(self.socket_dir, 0o750)
        else:
            os.chmod(self.socket_dir, 0o700)
        if (self.data / "PG_VERSION").exists():
            self._write_settings()
            return
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        )
        self._write_settings()

    def _write_settings(self) -> None:
        # Only a unix socket in a private directory: nothing listens on the network.
        text = (
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            f"port = {int(self.port)}\n"
            "fsync = on\n"
            "max_connections = 100\n"
        )
        if self.client_group:
            text += f"unix_socket_group = '{self.client_group}'\nunix_socket_permissions = 0770\n"
        target = self.data / "postgresql.auto.conf"
        target.write_text("# Written by DropHost at every start.\n" + text)
        self._own(target)

    def is_running(self) -> bool:
        result = runner.run(
            [str(self.bin / "pg_ctl"), "status", "-D", str(self.data)],
            timeout=30,
            check=False,
            preexec_fn=demote_to(self.run_as),
            cwd=Path("/"),
        )
        return result.returncode == 0

    def start(self) -> str:
        """Initialise if needed, start (or reuse a running cluster), create the database; return a DSN."""
        self.ensure_initialised()
        if not self.is_running():
            self._run(
                str(self.bin / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "postgres.log"),
            )
        self._create_database()
        return self.dsn

    def spawn(self, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
        """Run the postmaster as a child in the foreground (`drophost up`: it can die with its parent);
        wait until it answers and the database exists."""
        self.ensure_initialised()
        with open(self.root / "postgres.log", "ab") as log:
            process = runner.start(
                [str(self.bin / "postgres"), "-D", str(self.data)], output=log, preexec_fn=preexec_fn
            )
        try:
            self._create_database(process)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return process

    def _create_database(self, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname=postgres",
                    autocommit=True,
                ) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if process is not None and process.poll() is not None:
                    raise SettingsError(
                        "PostgreSQL exited at start; see postgres/postgres.log in the data directory"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data), timeout=60)

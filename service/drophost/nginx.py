"""nginx: render configs (pure), and the few actions on the running server (test, swap, reload)."""

from __future__ import annotations

import grp
import hashlib
import http.client
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from drophost import runner
from drophost.errors import CommandError, DeployFailedError, SettingsError
from drophost.settings import Settings
from drophost.slots import validate_slot

# Paths and addresses that end up in a config must match this; anything else is refused, not escaped.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._-]+$")
_SAFE_LISTEN = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_SAFE_UPSTREAM = re.compile(r"^http://(?:unix:/[A-Za-z0-9/._-]+:|[A-Za-z0-9.-]+:[0-9]{1,5})$")


@dataclass(frozen=True)
class SiteConfig:
    slot: str
    version: int
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def template_environment(template_dir: str = "") -> jinja2.Environment:
    loader: jinja2.BaseLoader
    if template_dir:
        loader = jinja2.FileSystemLoader(template_dir)
    else:
        loader = jinja2.PackageLoader("drophost.nginx_templates", ".")
    return jinja2.Environment(
        loader=loader, autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


def safe_path(path: Path | str) -> str:
    text = str(path)
    if not _SAFE_PATH.fullmatch(text) or "/../" in text or text.endswith("/.."):
        raise SettingsError(f"the path {text!r} has characters DropHost will not put in an nginx config")
    return text


def render_site_config(
    env: jinja2.Environment, *, slot: str, version: int, release_dir: Path, deployment_id: int
) -> SiteConfig:
    """The nginx config of one slot version; every value is allow-listed first."""
    validate_slot(slot)
    text = env.get_template("site.conf.j2").render(
        slot=slot, version=int(version), release_dir=safe_path(release_dir), deployment_id=int(deployment_id)
    )
    return SiteConfig(slot=slot, version=int(version), text=text)


def render_main_config(
    env: jinja2.Environment,
    settings: Settings,
    *,
    slot_includes: list[str],
    worker_user: str = "",
) -> str:
    """The whole nginx.conf; slot_includes is a glob for the live file, explicit paths for a test."""
    listen = f"{settings.host}:{settings.port}"
    if not _SAFE_LISTEN.fullmatch(listen):
        raise SettingsError(f"{listen!r} is not an address nginx can listen on")
    upstream = service_upstream(settings)
    if not _SAFE_UPSTREAM.fullmatch(upstream):
        raise SettingsError(f"{upstream!r} is not an address DropHost will proxy to")
    if worker_user and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31} [a-z_][a-z0-9_-]{0,31}", worker_user):
        raise SettingsError(f"{worker_user!r} is not a user name")
    mime_types = resources.files("drophost.nginx_templates").joinpath("mime.types")
    return env.get_template("nginx.conf.j2").render(
        nginx_dir=safe_path(settings.nginx_dir),
        listen=listen,
        service_upstream=upstream,
        slot_includes=[
            safe_path(p[: -len("/*.conf")]) + "/*.conf" if p.endswith("/*.conf") else safe_path(p)
            for p in slot_includes
        ],
        mime_types=safe_path(str(mime_types)),
        max_body_bytes=int(settings.max_upload_bytes) + 1024 * 1024,
        worker_user=worker_user,
        worker_processes="auto",
    )


def worker_user_directive(user: str) -> str:
    """ "user group" for nginx's user directive (Debian's nobody has no group of that name)."""
    try:
        entry = pwd.getpwnam(user)
        return f"{user} {grp.getgrgid(entry.pw_gid).gr_name}"
    except KeyError:
        raise SettingsError(f"the nginx worker user {user!r} does not exist") from None


def service_upstream(settings: Settings) -> str:
    address = settings.service_socket or str(settings.data_dir / "run" / "service.sock")
    if address.startswith("/"):
        return f"http://unix:{address}:"
    return f"http://{address}"


class Nginx:
    """The nginx whose configuration DropHost owns: files under settings.nginx_dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = template_environment(settings.nginx_template_dir)
        self.root = settings.nginx_dir
        self.conf_path = self.root / "nginx.conf"
        self.slots_dir = self.root / "slots"
        self.staging_dir = self.root / "staging"
        self.pid_path = self.root / "nginx.pid"
        # A root master hands requests to unprivileged workers; otherwise the directive is meaningless.
        self.worker_user = worker_user_directive(settings.nginx_worker_user) if os.geteuid() == 0 else ""

    # -- files -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the directories and write the main config (idempotent, done at every start)."""
        for folder in (self.slots_dir, self.staging_dir, self.root / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        if self.worker_user:
            # Workers run as an unprivileged user and need their temp files.
            for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (self.root / "tmp" / sub).mkdir(exist_ok=True)
                os.chmod(self.root / "tmp" / sub, 0o777)
        text = render_main_config(
            self.env,
            self.settings,
            slot_includes=[str(self.slots_dir / "*.conf")],
            worker_user=self.worker_user,
        )
        _write_atomically(self.conf_path, text)

    def slot_path(self, slot: str) -> Path:
        return self.slots_dir / f"{validate_slot(slot)}.conf"

    def live_slots(self) -> dict[str, str]:
        """Slot name -> config text currently installed."""
        found: dict[str, str] = {}
        for path in self.slots_dir.glob("*.conf"):
            found[path.stem] = path.read_text()
        return found

    def check_candidate(self, slot: str, text: str | None) -> None:
        """nginx -t the whole configuration as it would be with `slot` set to `text` (None: removed)."""
        staged: Path | None = None
        includes = sorted(str(p) for p in self.slots_dir.glob("*.conf") if p.stem != slot)
        if text is not None:
            staged = self.staging_dir / f"{validate_slot(slot)}.conf"
            _write_atomically(staged, text)
            includes.append(str(staged))
        test_conf = self.staging_dir / f"test-{validate_slot(slot)}.nginx.conf"
        try:
            _write_atomically(
                test_conf,
                render_main_config(self.env, self.settings, slot_includes=includes, worker_user=self.worker_user),
            )
            self.test(test_conf)
        finally:
            test_conf.unlink(missing_ok=True)

    def install(self, slot: str, text: str | None) -> None:
        """Switch the live file for one slot: atomic rename, or removal for None."""
        target = self.slot_path(slot)
        if text is None:
            target.unlink(missing_ok=True)
            return
        staged = self.staging_dir / f"{slot}.conf"
        if not staged.exists() or staged.read_text() != text:
            _write_atomically(staged, text)
        os.replace(staged, target)

    def discard_staged(self, slot: str) -> None:
        (self.staging_dir / f"{validate_slot(slot)}.conf").unlink(missing_ok=True)

    # -- the server --------------------------------------------------------------------------
    def command(self, *args: str, conf: Path | None = None) -> list[str]:
        return [
            self.settings.nginx_binary,
            "-e",
            str(self.root / "error.log"),
            "-c",
            str(conf or self.conf_path),
            *args,
        ]

    def test(self, conf: Path | None = None) -> None:
        try:
            runner.run(self.command("-t", "-q", conf=conf), timeout=self.settings.subprocess_timeout)
        except CommandError as exc:
            raise DeployFailedError(
                "nginx rejected the generated configuration; the previous version is still live",
                nginx=_nginx_reason(exc.output, self.root),
            ) from None

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def reload(self) -> frozenset[int]:
        """Signal nginx to load the new configuration; return the workers it replaces."""
        pid = self.pid()
        if pid is None:
            raise DeployFailedError("nginx is not running")
        old_workers = _children(pid)
        os.kill(pid, signal.SIGHUP)
        return old_workers

    def wait_for_reload(self, old_workers: frozenset[int], slot: str, version: int | None) -> bool:
        """Wait until no old worker accepts connections any more, then until the slot answers right.

        Old workers keep accepting for a moment after the reload; a request that lands on one would
        still see the previous version, so "live" is only reported once they have all let go.
        nginx's master waits 100 ms after starting the new workers before it tells the old ones to
        stop (ngx_master_process_cycle); that pause dominated every deploy and rollback, so once the
        new workers exist DropHost sends the old ones the same graceful stop (SIGQUIT) itself.
        """
        deadline = time.monotonic() + self.settings.reload_confirm_timeout
        master = self.pid()
        told: set[int] = set()
        while master is not None and time.monotonic() < deadline:
            started = _children(master) - old_workers
            accepting = [pid for pid in old_workers if _accepting_worker(pid)]
            if not accepting and started:
                break
            if started:
                for pid in set(accepting) - told:
                    told.add(pid)
                    _stop_old_worker(pid, master)
            time.sleep(0.002)
        return self.wait_until_serving(slot, version, deadline=deadline)

    def start(self) -> subprocess.Popen[bytes]:
        """Start nginx in the foreground as a child process (used by `drophost up` and tests)."""
        self.test()
        log = open(self.root / "nginx.stderr", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeployFailedError("nginx exited at start; see nginx.stderr in the data directory")
            if self.pid() == proc.pid and _accepts(self.settings.host, self.settings.port):
                return proc
            time.sleep(0.02)
        proc.kill()
        raise DeployFailedError("nginx did not start listening within 10 seconds")

    def wait_until_serving(self, slot: str, version: int | None, *, deadline: float | None = None) -> bool:
        """Poll nginx until /d/{slot}/ answers from `version` (None: from no version)."""
        expected = None if version is None else str(version)
        if deadline is None:
            deadline = time.monotonic() + self.settings.reload_confirm_timeout
        while True:
            if _served_version(self.settings.host, self.settings.port, slot) == expected:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.003)


def _children(parent: int) -> frozenset[int]:
    """Child processes of `parent` (nginx's workers of the master)."""
    try:
        # The kernel's own list: far cheaper than reading every process's stat, which matters
        # because the reload wait polls this every few milliseconds while nginx needs the CPU.
        found: set[int] = set()
        for task in os.scandir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{task.name}/children", "rb") as handle:
                found.update(int(pid) for pid in handle.read().split())
        return frozenset(found)
    except (OSError, ValueError):
        return _children_by_scan(parent)


def _children_by_scan(parent: int) -> frozenset[int]:
    """Child processes of `parent`, from every process's stat (kernels without task/*/children)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after the last ")" do not.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            found.add(int(entry.name))
    return frozenset(found)


def _accepting_worker(pid: int) -> bool:
    """Is this (old) worker still running and not yet shutting down?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            title = handle.read()
    except OSError:
        return False
    # nginx retitles a worker just before it closes its listening sockets on a graceful stop.
    return b"shutting down" not in title and b"worker process" in title


def _stop_old_worker(pid: int, master: int) -> None:
    """Graceful stop of one old worker (in-flight requests finish), as the master would send it."""
    if _parent_of(pid) != master:
        return  # gone already, and the number may belong to another process by now
    try:
        os.kill(pid, signal.SIGQUIT)
    except (ProcessLookupError, PermissionError):
        pass  # the master stops it a moment later anyway


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def _served_version(host: str, port: int, slot: str) -> str | None:
    conn = http.client.HTTPConnection(_loopback(host), port, timeout=2)
    try:
        conn.request("HEAD", f"/d/{slot}/")
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Drophost-Version")
    except OSError:
        return "unreachable"
    finally:
        conn.close()


def _accepts(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((_loopback(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host in ("::", "[::]") else host.strip("[]"))


def _nginx_reason(output: str, root: Path) -> str:
    """The first nginx message, without server paths: safe to show to a client."""
    for line in output.splitlines():
        if "[emerg]" in line or "[error]" in line:
            text = line.split("]", 1)[-1].strip()
            text = re.sub(r"(/[^\s:\"']+)+", "<path>", text)
            return text[:300]
    return "nginx -t failed"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

"""The running nginx: files it reads, nginx -t, the live/ links, reload and its confirmation."""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path

from drophost import runner
from drophost.errors import CommandError, DeployFailedError
from drophost.names import is_valid_slot, validate_slot
from drophost.pipeline import nginxprocess
from drophost.pipeline.nginxconfig import (
    changed_entries,
    changed_parts,
    compose_config,
    compose_sites,
    release_link_target,
    render_main_config,
    safe_path,
    site_entry,
    site_part,
    split_part,
    template_environment,
    worker_user_directive,
)
from drophost.settings import Settings

_HEARTBEAT_STALE_SECONDS = 5.0
# What the sites origin answers where it serves nothing (nginx.conf.j2 picks one by Accept).
PAGES = ("not-found.html", "not-found.json", "expired.html", "expired.json")


class Nginx:
    """The nginx whose configuration DropHost owns: files under settings.nginx_dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = template_environment(settings.nginx_template_dir)
        self.root = settings.nginx_dir
        self.conf_path = self.root / "nginx.conf"
        # One file holds the entry of every live slot: nginx reads one small map, not a file per slot.
        self.sites_path = self.root / "sites.map"
        self.staging_dir = self.root / "staging"
        # The sites map as nginx has it: slot -> site_entry of its active config.
        self.entries: dict[str, str] = {}
        # A slot with rules also has its own location, slots/<slot>.conf (site_part of its config);
        # the sites server reads them from root/, whose d/ leads to live/.
        self.slots_dir = self.root / "slots"
        # and, with many exact redirects, maps at http level: maps/<slot>.conf (split_part).
        self.maps_dir = self.root / "maps"
        self.parts: dict[str, str] = {}
        self.site_root = self.root / "root"
        # Password files of protected slots, named by their content, outside every release.
        self.auth_dir = self.root / "auth"
        # live/<slot> links to the release nginx serves for the slot: moving a link switches files.
        self.live_dir = settings.data_dir / "live"
        self.pid_path = self.root / "nginx.pid"
        self.mime_path = self.root / "mime.types"
        # A root master hands requests to unprivileged workers; otherwise the directive is meaningless.
        # In containers nginx runs elsewhere and a watcher next to it runs nginx -t and reloads.
        self.watcher = settings.nginx_control == "watcher"
        self.control_dir = self.root / "control"
        self.worker_user = worker_user_directive(settings.nginx_worker_user) if os.geteuid() == 0 else ""

    @property
    def worker_group(self) -> int | None:
        """The group nginx's workers run as when DropHost is root (they read the password files)."""
        if not self.worker_user:
            return None
        return grp.getgrnam(self.worker_user.split()[1]).gr_gid

    # -- files -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the directories and write the main config (idempotent, done at every start)."""
        for folder in (
            self.staging_dir,
            self.root / "tmp",
            self.live_dir,
            self.slots_dir,
            self.maps_dir,
            self.site_root,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        # nginx's workers open the password files by name; nobody else can list them.
        self.auth_dir.mkdir(exist_ok=True)
        os.chmod(self.auth_dir, 0o711)
        os.chmod(self.live_dir, 0o755)  # nginx's workers follow the links
        # root/d -> live: a slot's own location serves $document_root/d/<slot>/... from its link.
        site_link = self.site_root / "d"
        if not site_link.is_symlink() or os.readlink(site_link) != str(self.live_dir):
            staged_link = self.site_root / f".d.{uuid.uuid4().hex}"
            os.symlink(self.live_dir, staged_link)
            os.replace(staged_link, site_link)
        if self.watcher:
            for folder in (self.control_dir / "requests", self.control_dir / "results"):
                folder.mkdir(parents=True, exist_ok=True)
        # Copies next to the config, so an nginx in another container finds them at the same path.
        templates = resources.files("drophost.nginx_templates")
        _copy_if_changed(templates.joinpath("mime.types").read_text(), self.mime_path)
        (self.root / "pages").mkdir(exist_ok=True)
        os.chmod(self.root / "pages", 0o755)  # read by nginx's workers
        for page in PAGES:
            _copy_if_changed(templates.joinpath("pages", page).read_text(), self.root / "pages" / page)
        if self.worker_user or self.watcher:
            # Workers run as an unprivileged user and need their temp files.
            for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
                folder = self.root / "tmp" / sub
                folder.mkdir(exist_ok=True)
                # nginx itself hands these to its worker user at start; then they are not ours to change.
                with contextlib.suppress(PermissionError):
                    os.chmod(folder, 0o777)
        if not self.sites_path.exists():
            _write_atomically(self.sites_path, compose_sites({}))
        text = render_main_config(self.env, self.settings, sites_map=str(self.sites_path), worker_user=self.worker_user)
        _write_atomically(self.conf_path, text)

    def check_candidates(self, changes: Mapping[str, str | None]) -> None:
        """nginx -t the configuration as it would be with every change (a config text, or None to
        remove the slot) applied: the main config, the candidate sites map, and the changed slots'
        own parts.

        The other slots' parts are left out: nginx accepted each of them next to the same main
        config when it went live, and no part names anything of another slot's (its locations,
        named locations and map variables all carry its own slot name), so none can make another
        fail. Parsing only what changed keeps a rules change from costing a parse of every slot
        with rules (bench/RESULTS.md, "Site rules"); start-up still tests everything.
        """
        candidate = changed_entries(self.entries, changes)
        staged = self.staging_dir / "sites.map"
        _write_atomically(staged, compose_sites(candidate))
        staged_parts = self.staging_dir / "slots"
        staged_parts.mkdir(exist_ok=True)
        includes, map_includes = [], []
        parts = changed_parts(self.parts, changes)
        for slot in sorted(set(changes) & set(parts)):
            server, maps = split_part(parts[slot])
            _write_atomically(staged_parts / f"{slot}.conf", server)
            includes.append(str(staged_parts / f"{slot}.conf"))
            if maps:
                _write_atomically(staged_parts / f"{slot}.maps", maps)
                map_includes.append(str(staged_parts / f"{slot}.maps"))
        test_conf = self.staging_dir / "test.nginx.conf"
        try:
            _write_atomically(
                test_conf,
                render_main_config(
                    self.env,
                    self.settings,
                    sites_map=str(staged),
                    worker_user=self.worker_user,
                    slot_includes=includes,
                    map_includes=map_includes,
                ),
            )
            self.test(test_conf)
        finally:
            test_conf.unlink(missing_ok=True)

    def install_many(self, changes: Mapping[str, str | None]) -> bool:
        """Apply every change (a config text, or None to remove the slot) to the live entries with
        one atomic rename (and each slot's own part with one rename); return whether a file changed."""
        parts = self._install_parts(changed_parts(self.parts, changes), changes)
        return self._install_entries(changed_entries(self.entries, changes)) or parts

    def install_all(self, configs: Mapping[str, str]) -> bool:
        """Make exactly these slots' configs live; return whether a file changed."""
        on_disk = {
            path.name.removesuffix(".conf")
            for folder in (self.slots_dir, self.maps_dir)
            for path in folder.glob("*.conf")
        }
        slots = {*on_disk, *self.parts, *configs}
        parts = self._install_parts(changed_parts({}, configs), slots)
        return self._install_entries(changed_entries({}, configs)) or parts

    def has_entry(self, slot: str, text: str) -> bool:
        """Does nginx already have exactly this config's entry and part for the slot (so only files differ)?"""
        return self.entries.get(slot) == site_entry(text) and self.parts.get(slot, "") == site_part(text)

    def current_config(self, slot: str) -> str | None:
        """What nginx has for the slot, as a config text (None: no entry), for putting it back."""
        entry = self.entries.get(slot)
        return None if entry is None else compose_config(entry, self.parts.get(slot, ""))

    def _install_parts(self, parts: dict[str, str], slots: Iterable[str]) -> bool:
        """Write (or remove) the part files of each slot named (its locations in slots/, its maps in
        maps/); nginx reads them at its next reload."""
        changed = False
        for slot in slots:
            texts = split_part(parts.get(slot, ""))
            for folder, text in zip((self.slots_dir, self.maps_dir), texts, strict=True):
                path = folder / f"{validate_slot(slot)}.conf"
                if text and (not path.exists() or path.read_text() != text):
                    _write_atomically(path, text, tmp_suffix=".tmp")
                    changed = True
                elif not text and path.exists():
                    path.unlink()
                    changed = True
        self.parts = dict(parts)
        return changed

    def _install_entries(self, entries: dict[str, str]) -> bool:
        self.entries = dict(entries)
        text = compose_sites(self.entries)
        if self.sites_path.exists() and self.sites_path.read_text() == text:
            return False
        _write_atomically(self.sites_path, text)
        return True

    def discard_staged(self) -> None:
        (self.staging_dir / "sites.map").unlink(missing_ok=True)
        for staged in (self.staging_dir / "slots").glob("*.*"):
            staged.unlink(missing_ok=True)

    def sweep_leftovers(self) -> None:
        """Remove what a crash can leave half made: staged files, and links not yet moved into place
        (their names start with a dot, so they are no slot's; nor is anything else in live/ that is
        not named like a slot)."""
        for leftover in self.staging_dir.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        for folder in (self.slots_dir, self.maps_dir):
            for leftover in folder.glob("*.tmp"):
                leftover.unlink()
        for entry in list(os.scandir(self.live_dir)):
            if not is_valid_slot(entry.name):
                Path(entry.path).unlink(missing_ok=True)

    def point(self, slot: str, release_dir: Path | str | None) -> bool:
        """Make live/<slot> lead to this release (None: remove the link), atomically; return
        whether the link changed.

        nginx opens files through the link on every request and caches nothing, so the next
        request is served from the new release: no reload, and no other slot is looked at.
        """
        link = self.live_dir / validate_slot(slot)
        if release_dir is None:
            try:
                link.unlink()
            except FileNotFoundError:
                return False
            return True
        target = release_link_target(release_dir)
        if self.pointed(slot) == target:
            return False
        # Names starting with a dot are never a slot, so nginx can never serve the half-made link.
        staged = self.live_dir / f".{slot}.{uuid.uuid4().hex}"
        os.symlink(target, staged)
        try:
            os.replace(staged, link)
        except OSError:
            staged.unlink(missing_ok=True)
            raise
        return True

    def pointed(self, slot: str) -> str | None:
        """Where live/<slot> leads now (the relative target), or None."""
        try:
            return os.readlink(self.live_dir / validate_slot(slot))
        except OSError:
            return None

    def restore_link(self, slot: str, target: str | None) -> None:
        """Put a link back to a target read earlier with pointed()."""
        if target is None:
            self.point(slot, None)
        else:
            self.point(slot, Path(self.live_dir, target))

    def linked_slots(self) -> set[str]:
        """The slots live/ has a link for."""
        return {entry.name for entry in os.scandir(self.live_dir) if is_valid_slot(entry.name)}

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
            if self.watcher:
                self._ask_watcher("test", conf or self.conf_path)
            else:
                runner.run(self.command("-t", "-q", conf=conf), timeout=self.settings.subprocess_timeout)
        except CommandError as exc:
            raise DeployFailedError(
                "nginx rejected the generated configuration; the previous version is still live",
                nginx=_nginx_reason(exc.output, self.root),
            ) from None

    def pid(self) -> int | None:
        if self.watcher:
            return None  # nginx runs in another container: its pid means nothing here
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
        if self.watcher:
            try:
                age = time.time() - (self.control_dir / "heartbeat").stat().st_mtime
            except OSError:
                return False
            return age < _HEARTBEAT_STALE_SECONDS
        return self.pid() is not None

    def reload(self) -> frozenset[int]:
        """Signal nginx to load the new configuration; return the workers it replaces."""
        if self.watcher:
            # The watcher reloads and answers once the old workers have stopped accepting.
            self._ask_watcher("reload", self.conf_path)
            return frozenset()
        pid = self.pid()
        if pid is None:
            raise DeployFailedError("nginx is not running")
        old_workers = nginxprocess.children(pid)
        os.kill(pid, signal.SIGHUP)
        return old_workers

    def reopen_logs(self) -> None:
        """SIGUSR1: nginx reopens its log files (after the access log was renamed)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGUSR1)

    def wait_for_reload(self, old_workers: frozenset[int], slot: str, serving: bool) -> bool:
        """Wait until no old worker accepts connections any more, then until nginx serves the slot
        (or, with serving False, no longer does).

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
            started = nginxprocess.children(master) - old_workers
            accepting = [pid for pid in old_workers if nginxprocess.accepting_worker(pid)]
            if not accepting and started:
                break
            if started:
                for pid in set(accepting) - told:
                    told.add(pid)
                    nginxprocess.stop_old_worker(pid, master)
            time.sleep(0.002)
        return self.wait_until_serving(slot, serving, deadline=deadline)

    def _ask_watcher(self, action: str, conf: Path) -> None:
        """The container protocol: a request file in control/requests, the answer in control/results.

        nginx runs in its own container with the data volume at the same path; a small watcher there
        runs `nginx -t` or the reload and writes back "ok" or "failed" and nginx's output.
        """
        request_id = uuid.uuid4().hex
        requests, results = self.control_dir / "requests", self.control_dir / "results"
        _write_atomically(requests / f"{request_id}.req", f"{action} {safe_path(conf)}\n")
        answer = results / f"{request_id}.res"
        deadline = time.monotonic() + self.settings.subprocess_timeout
        while not answer.exists():
            if time.monotonic() > deadline:
                (requests / f"{request_id}.req").unlink(missing_ok=True)
                raise DeployFailedError("nginx did not answer (its control watcher is not running)")
            time.sleep(0.003)
        status, _, output = answer.read_text().partition("\n")
        answer.unlink(missing_ok=True)
        if status.strip() != "ok":
            raise CommandError(f"nginx {action} failed", returncode=1, output=output)

    def start(self, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
        """Start nginx in the foreground as a child process (used by `drophost up` and tests)."""
        self.test()
        with open(self.root / "nginx.stderr", "ab") as log:  # the child keeps its own copy
            proc = runner.start(self.command(), output=log, preexec_fn=preexec_fn)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeployFailedError("nginx exited at start; see nginx.stderr in the data directory")
            if (
                self.pid() == proc.pid
                and nginxprocess.accepts(self.settings.host, self.settings.port)
                and nginxprocess.accepts(self.settings.host, self.settings.sites_listen_port)
            ):
                return proc
            time.sleep(0.02)
        proc.kill()
        raise DeployFailedError("nginx did not start listening within 10 seconds")

    @property
    def probe_address(self) -> tuple[str, int]:
        """Where the service itself reaches nginx (another container's name in compose)."""
        if self.settings.nginx_probe:
            host, _, port = self.settings.nginx_probe.rpartition(":")
            return host, int(port)
        return self.settings.host, self.settings.sites_listen_port

    def wait_until_serving(self, slot: str, serving: bool = True, *, deadline: float | None = None) -> bool:
        """Poll nginx until it has the slot in its sites map (serving False: until it has not).

        Which files it serves is the link's business and needs no wait: see point().
        """
        expected = slot if serving else None
        if deadline is None:
            deadline = time.monotonic() + self.settings.reload_confirm_timeout
        while True:
            served = nginxprocess.served_slot(
                *self.probe_address, slot, self.settings.sites_host, tls=self.settings.tls
            )
            if served == expected:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.003)


def _nginx_reason(output: str, root: Path) -> str:
    """The first nginx message, without server paths: safe to show to a client."""
    for line in output.splitlines():
        if "[emerg]" in line or "[error]" in line:
            text = line.split("]", 1)[-1].strip()
            text = re.sub(r"(/[^\s:\"']+)+", "<path>", text)
            return text[:300]
    return "nginx -t failed"


def _copy_if_changed(text: str, path: Path) -> None:
    if not path.exists() or path.read_text() != text:
        _write_atomically(path, text)
        os.chmod(path, 0o644)


def _write_atomically(path: Path, text: str, *, tmp_suffix: str = "") -> None:
    # The temporary name never ends in .conf, so nginx's include of slots/*.conf never reads it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{tmp_suffix}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

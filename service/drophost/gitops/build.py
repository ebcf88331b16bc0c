"""Build a commit of a site with `build:` in deploy.yaml: the slot's checkout is brought to the
commit, the command runs in the sandbox (pipeline/sandbox.py), and its output becomes the tree to publish.

Each slot keeps its checkout in <data>/builds/checkouts/<slot> between builds, with its git index
beside it (<slot>.index, out of the build's view): the next build first removes what is not in the
index (what the last build wrote) and then has git write only the files that differ from the commit
(`read-tree --reset -u`, which also restores any tracked file a build changed), rather than every file
of the commit again. For the build it is renamed to <data>/builds/work/<deployment id> (one rename),
and back afterwards. The output folder is renamed out of it into the release (buildoutput.adopt_output).
The slot's cache folders live in <data>/builds/cache/<slot>/ between builds; the log in
<data>/builds/logs/<deployment id>.log.
When DropHost runs as root, the build runs as its own user (DROPHOST_BUILD_USER).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drophost.accounts import ensure_user
from drophost.errors import BuildError, CommandError, GitError
from drophost.gitops.manifest import BuildSpec
from drophost.gitops.mirror import GitSource
from drophost.pipeline import remotebuild, sandbox
from drophost.pipeline.archive import ArchiveLimits
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.buildlog import BuildLog
from drophost.pipeline.buildoutput import Copied, adopt_output, copy_output
from drophost.settings import Settings

_READ = 1024 * 1024
CHECKOUT_WORKERS = 4


@dataclass(frozen=True)
class Target:
    """What is built: the platform's variables (as Netlify names them too) come from here."""

    deployment_id: int
    slot: str
    branch: str
    commit: str
    path: str
    preview: bool


def platform_env(settings: Settings, target: Target) -> dict[str, str]:
    """The variables every build gets (pure); deploy.yaml's env cannot override them."""
    base_path = f"/d/{target.slot}/"
    url = f"{settings.site_base_url}{base_path}"
    context = "preview" if target.preview else "production"
    return {
        "DROPHOST_SLOT": target.slot,
        "DROPHOST_URL": url,
        "DROPHOST_BASE_PATH": base_path,
        "DROPHOST_BRANCH": target.branch,
        "DROPHOST_COMMIT": target.commit,
        "DROPHOST_CONTEXT": context,
        "URL": url,
        "DEPLOY_URL": url,
        "CONTEXT": context,
        "BRANCH": target.branch,
        "COMMIT_REF": target.commit,
    }


def build_env(settings: Settings, spec: BuildSpec, target: Target, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(spec.env)
    for name in spec.secrets_env:
        value = environ.get(name)
        if value is None:
            raise BuildError(f"the variable {name} (build.secrets_env) is not set in DropHost's environment")
        env[name] = value
    env.update(platform_env(settings, target))
    return env


def mask(text: str, secrets: list[str]) -> str:
    """A build's output line with the values of its secrets_env replaced: never logged, so never shown
    (the log, its follow stream, a push's remote: lines, a failed deployment's error)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def cache_folder(builds_dir: Path, slot: str, relative: str) -> Path:
    key = hashlib.sha256(relative.encode()).hexdigest()[:16]
    return builds_dir / "cache" / slot / key


class Builder:
    def __init__(self, settings: Settings, source: GitSource, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.source = source
        self.environ = environ
        self._slots = threading.BoundedSemaphore(max(1, settings.build_concurrency))
        self._probe_lock = threading.Lock()
        self._sandbox_error: str | None = None
        self._probed = False
        self._slot_locks: dict[str, threading.Lock] = {}
        self._system = sandbox.host_system()

    def discard_leftovers(self) -> int:
        """Move aside the build trees a stopped service left in builds/work (call before any build
        starts: each build's tree is its deployment's, and those deployments failed at the restart)."""
        folder = self.settings.builds_dir / "work"
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        for name in names:
            _discard(folder / name, self.settings.builds_dir / "trash")
        return len(names)

    def build(
        self,
        spec: BuildSpec,
        target: Target,
        git_dir: Path,
        limits: ArchiveLimits,
        incoming: Path,
        log: BuildLog,
        artifacts: ArtifactStore,
    ) -> Copied:
        """Build the commit and move (or copy) its output into `incoming` (which must not exist yet),
        each file linked into the artifact store as it goes.

        The caller holds a build slot (reserve()): builds past DROPHOST_BUILD_CONCURRENCY wait queued.
        """
        builds = self.settings.builds_dir
        work = builds / "work" / str(target.deployment_id)
        checkout = builds / "checkouts" / target.slot
        # Unconfined builds may leave processes behind that could still write: their output is
        # copied and their tree not kept.
        confined = self.settings.build_sandbox != "none" or bool(self.settings.builder_url)
        log.line(f"DropHost: building {target.commit[:12]} of {target.branch} for {target.slot}")
        with self._slot_lock(target.slot):
            try:
                run_as = None if self.settings.builder_url else self._run_as()
                if not self.settings.builder_url:
                    self._check_sandbox(run_as)
                _prepare_folder(builds / "work", 0o711)
                _prepare_folder(builds / "checkouts", 0o700)
                _remove(work)
                self._check_out(git_dir, target.commit, checkout, limits)
                os.rename(checkout, work)
                tree = work / target.path if target.path else work
                if not _plain_folder(work, target.path):
                    raise BuildError(f'the path "{target.path}" is not a folder in the commit')
                caches = self._caches(spec, target, tree, run_as)
                if run_as is not None:
                    self._hand_over(git_dir, work, _index_of(checkout), run_as)
                job = sandbox.Job(
                    command=spec.command,
                    tree=work,
                    workdir=target.path,
                    caches=caches,
                    env=tuple(build_env(self.settings, spec, target, self.environ).items()),
                    network=spec.network,
                    tools=tuple(Path(t) for t in self.settings.build_tools.split(":") if t),
                )
                timeout = min(spec.timeout, self.settings.build_max_timeout)
                limits_ = sandbox.Limits(
                    cpu_seconds=timeout,
                    memory_bytes=self.settings.build_memory_bytes,
                    processes=self.settings.build_processes,
                    open_files=self.settings.build_open_files,
                    file_bytes=self.settings.build_file_bytes,
                )
                log.line(f"DropHost: $ {' '.join(spec.command)}")
                secrets = [value for name in spec.secrets_env if (value := self.environ.get(name))]
                self._run(job, limits_, timeout, run_as, on_line=lambda text: log.line(mask(text, secrets)))
                output = tree / spec.output
                if not _plain_folder(tree, spec.output):
                    raise BuildError("the build's output is not a folder (a link or a file)")
                # Held while linking blobs, so garbage collection never removes one meanwhile.
                with artifacts.using():
                    if confined:
                        copied = adopt_output(output, incoming, limits, artifacts)
                    else:
                        copied = copy_output(output, incoming, limits, store=artifacts)
                log.line(f"DropHost: the build's output holds {copied.files} files ({copied.size} bytes)")
                return copied
            except BuildError as exc:
                log.line(f"DropHost: {exc.message}")
                raise
            finally:
                self._keep_checkout(work, checkout, confined=confined)

    def _check_out(self, git_dir: Path, commit: str, checkout: Path, limits: ArchiveLimits) -> None:
        """Bring the slot's checkout to the whole commit (dotfiles too: it is source, not output),
        within the ZIP caps; what a build left or changed there is undone, and only the files that
        differ are written. A checkout that cannot be brought there is written again from nothing."""
        links = self._check_tree(git_dir, commit, limits)
        index = _index_of(checkout)
        try:
            self._update_checkout(git_dir, commit, checkout, index)
        except (CommandError, OSError):
            _discard(checkout, self.settings.builds_dir / "trash")
            index.unlink(missing_ok=True)
            try:
                self._update_checkout(git_dir, commit, checkout, index)
            except CommandError as exc:
                raise GitError("the commit could not be read from the repository") from exc
        for name in links:
            # As a ZIP's: a link pointing out of the tree is not written (git writes every link).
            path = checkout / name
            with contextlib.suppress(OSError):
                if not inside_tree(os.readlink(path), os.path.dirname(name)):
                    os.unlink(path)

    def _update_checkout(self, git_dir: Path, commit: str, checkout: Path, index: Path) -> None:
        checkout.mkdir(mode=0o755, exist_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        work_tree = f"--work-tree={checkout}"
        if index.exists():
            # git clean and read-tree never look at a path named .git: one the last build left (a
            # .git/config with core.fsmonitor or hooks) would run in the next build's own git.
            _remove_git_entries(checkout)
            # What the last build wrote (its output, lock files, caches' mount points) goes first:
            # read-tree would not write a file over an untracked one.
            self.source.git(git_dir, work_tree, "clean", "-ffdxq", env=env)
        # Writing files is where a cold checkout waits (on a busy disk each file costs ~0.5 ms):
        # from 100 files to write on, git shares them among worker processes (1,000 files took
        # 0.4 to 1.0 s alone and 0.1 to 0.75 s with 4 workers here).
        parallel = f"checkout.workers={CHECKOUT_WORKERS}"
        self.source.git(git_dir, "-c", parallel, work_tree, "read-tree", "--reset", "-u", commit, env=env)

    def _hand_over(self, git_dir: Path, work: Path, index: Path, run_as: sandbox.RunAs) -> None:
        """Make the tree the build user's: only what git wrote this time changes owner, and the index
        then learns the files' new status (git compares their contents, unchanged), so that the next
        checkout still finds every file the build left alone up to date, and writes only the others."""
        changed = _own_new(work, run_as)
        if changed:
            env = {"GIT_INDEX_FILE": str(index)}
            with contextlib.suppress(CommandError):  # the next checkout writes those files again
                self.source.git(git_dir, f"--work-tree={work}", "update-index", "-q", "--refresh", env=env)

    def _check_tree(self, git_dir: Path, commit: str, limits: ArchiveLimits) -> list[str]:
        """Refuse a commit past the caps before anything is written (entries and bytes, read as git
        lists them); the names of its symbolic links."""
        entries = 0
        total = 0
        links = []
        try:
            with self.source.git_stream(git_dir, "ls-tree", "-r", "-t", "-l", "-z", "--full-tree", commit) as out:
                pending = b""
                while chunk := out.read(_READ):
                    records = (pending + chunk).split(b"\0")
                    pending = records.pop()
                    for record in records:
                        meta, _, name = record.partition(b"\t")
                        mode, _, _, size = meta.split()
                        entries += 1
                        total += int(size) if size.isdigit() else 0
                        if entries > limits.max_entries:
                            raise GitError(f"the tree has more than {limits.max_entries} entries")
                        if total > limits.max_unpacked_bytes:
                            raise GitError(f"the tree holds more than {limits.max_unpacked_bytes} bytes")
                        if mode == b"120000":
                            links.append(os.fsdecode(name))
        except (CommandError, ValueError) as exc:
            raise GitError("the commit could not be read from the repository") from exc
        return links

    def _keep_checkout(self, work: Path, checkout: Path, *, confined: bool) -> None:
        """The build's tree becomes the slot's checkout again; an unconfined build's is not kept (its
        processes may outlive it), and it is written again from nothing next time."""
        if not confined:
            _discard(work, self.settings.builds_dir / "trash")
            _index_of(checkout).unlink(missing_ok=True)
            return
        try:
            os.rename(work, checkout)
        except FileNotFoundError:
            return
        except OSError:
            _discard(work, self.settings.builds_dir / "trash")
            _index_of(checkout).unlink(missing_ok=True)

    def _slot_lock(self, slot: str) -> threading.Lock:
        with self._probe_lock:
            return self._slot_locks.setdefault(slot, threading.Lock())

    def _run(
        self,
        job: sandbox.Job,
        limits: sandbox.Limits,
        timeout: int,
        run_as: sandbox.RunAs | None,
        on_line: Callable[[str], None],
    ) -> None:
        """Run the build here (bubblewrap, or unconfined) or in the builder (DROPHOST_BUILDER_URL)."""
        if self.settings.builder_url:
            remotebuild.run_remote(self.settings.builder_url, job, limits, timeout, on_line=on_line)
        elif self.settings.build_sandbox == "none":
            argv = sandbox.plan_unconfined(job, limits)
            cwd = job.tree / job.workdir if job.workdir else job.tree
            env = sandbox.environment(job)
            sandbox.run(argv, cwd=cwd, env=env, timeout=timeout, run_as=run_as, on_line=on_line)
        else:
            argv = sandbox.plan_bwrap(self.settings.build_bwrap, job, limits, self._system)
            env = {"PATH": sandbox.PATH}
            sandbox.run(argv, cwd=Path("/"), env=env, timeout=timeout, run_as=run_as, on_line=on_line, sandboxed=True)

    def reserve(self, *, blocking: bool = False) -> bool:
        """Take one of the DROPHOST_BUILD_CONCURRENCY build slots if one is free, or wait for one
        (release() gives it back)."""
        return self._slots.acquire(blocking=blocking)

    def release(self) -> None:
        self._slots.release()

    def _run_as(self) -> sandbox.RunAs | None:
        if os.geteuid() != 0:
            return None
        account = ensure_user(self.settings.build_user, Path("/nonexistent"))
        return sandbox.RunAs(uid=account.uid, gid=account.gid)

    def _check_sandbox(self, run_as: sandbox.RunAs | None) -> None:
        if self.settings.build_sandbox == "none":
            return
        if self.settings.build_sandbox != "bwrap":
            raise BuildError('DROPHOST_BUILD_SANDBOX must be "bwrap" or "none"')
        with self._probe_lock:
            if not self._probed:
                self._sandbox_error = sandbox.probe(self.settings.build_bwrap, run_as=run_as, system=self._system)
                self._probed = True
        if self._sandbox_error:
            raise BuildError(
                f"builds are refused: {self._sandbox_error}. Install bubblewrap and allow user namespaces,"
                " or set DROPHOST_BUILD_SANDBOX=none to build without a sandbox (trusting everyone who can push)"
            )

    def _caches(
        self, spec: BuildSpec, target: Target, tree: Path, run_as: sandbox.RunAs | None
    ) -> tuple[tuple[Path, str], ...]:
        caches = []
        for relative in spec.cache:
            folder = cache_folder(self.settings.builds_dir, target.slot, relative)
            _prepare_folder(folder.parent.parent, 0o711)
            _prepare_folder(folder.parent, 0o711)
            folder.mkdir(mode=0o755, exist_ok=True)
            if run_as is not None:
                os.chown(folder, run_as.uid, run_as.gid)
            _mount_point(tree, relative)
            caches.append((folder, relative))
        return tuple(caches)


def inside_tree(name: str, folder: str) -> bool:
    """Whether `name`, taken relative to `folder`, stays inside the tree (pure)."""
    if name.startswith("/") or "\0" in name:
        return False
    joined = os.path.normpath(os.path.join(folder, name))
    return joined != ".." and not joined.startswith("../") and not os.path.isabs(joined)


def _index_of(checkout: Path) -> Path:
    """The checkout's git index: beside it, never inside the build's tree."""
    return checkout.with_name(checkout.name + ".index")


def _own_new(root: Path, run_as: sandbox.RunAs) -> bool:
    """Give the build user what it does not own yet in its tree (never following a link); whether
    anything changed. A chown changes a file's status time, which git would take as a change."""
    changed = False
    for folder, dirs, files in os.walk(root):
        for path in [folder] if folder == str(root) else []:
            changed |= _own_one(path, run_as)
        for name in dirs + files:
            changed |= _own_one(os.path.join(folder, name), run_as)
    return changed


def _own_one(path: str, run_as: sandbox.RunAs) -> bool:
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) == (run_as.uid, run_as.gid):
        return False
    os.lchown(path, run_as.uid, run_as.gid)
    return True


def _plain_folder(root: Path, relative: str) -> bool:
    """Whether `relative` under root is a folder reached through folders only, never a link: the
    build may have put links anywhere in its tree, and the service must not follow one out of it."""
    current = root
    for part in [p for p in relative.split("/") if p]:
        current = current / part
        try:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _mount_point(tree: Path, relative: str) -> None:
    """A plain empty folder at `relative` for a cache to be mounted on; what the commit had there goes
    (a link there would point the mount elsewhere inside the sandbox)."""
    current = tree
    for part in relative.split("/"):
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            current.unlink()
            current.mkdir(mode=0o755)
    _remove(current)
    current.mkdir(mode=0o755)


def _discard(work: Path, trash: Path) -> None:
    """Move a finished build's tree aside and remove it in the background: thousands of files take
    seconds to unlink on a busy disk, and the deploy need not wait for that. What a stopped
    process left in trash/ goes with the next build's."""
    try:
        trash.mkdir(mode=0o700, exist_ok=True)
        os.rename(work, trash / f"{work.name}-{uuid.uuid4().hex}")
    except FileNotFoundError:
        return
    except OSError:
        _remove(work)
        return
    threading.Thread(target=_empty, args=(trash,), name="build-trash", daemon=True).start()


_emptying = threading.Lock()


def _empty(trash: Path) -> None:
    with _emptying:
        for entry in os.scandir(trash):
            _remove(Path(entry.path))


def _remove_git_entries(tree: Path) -> None:
    """Remove every entry named .git in `tree`, at any depth (links are not followed)."""

    def stop(error: OSError) -> None:
        raise error  # a folder it cannot read may hold one: the caller writes the checkout anew

    for folder, dirs, files in os.walk(tree, onerror=stop):
        for name in (*dirs, *files):
            path = Path(folder) / name
            if name != ".git":
                continue
            if path.is_dir() and not path.is_symlink():
                _remove(path)
            else:
                path.unlink()
        dirs[:] = [name for name in dirs if name != ".git"]


def _prepare_folder(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def _remove(path: Path) -> None:
    """Remove a tree a build wrote, even one it left without write permission on its folders."""

    def allow(function: object, name: str, _: object) -> None:
        parent = os.path.dirname(name)
        os.chmod(parent, 0o700)
        if os.path.isdir(name) and not os.path.islink(name):
            os.chmod(name, 0o700)
            shutil.rmtree(name, onerror=allow)
        else:
            os.unlink(name)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=allow)

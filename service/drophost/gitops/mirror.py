"""Git as a source: one bare mirror per repository, and the tree of one commit written like a ZIP.

Every git call goes through runner.run with a fixed argv, `--` before positionals, a protocol
allow-list, hooks/fsmonitor/submodules/LFS/prompts/redirects off, and a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from drophost import runner
from drophost.errors import CommandError, DrophostError, GitError
from drophost.gitops.repourls import RepoUrl, check_branch, check_repo_path, repo_key, strip_credentials
from drophost.gitops.ssh import ssh_command, ssh_reason
from drophost.pipeline.archive import ArchiveLimits, check_entry_name
from drophost.settings import Settings
from drophost.text import show

_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_BATCH_BYTES = 32 * 1024 * 1024
_MAX_VALID_REFS = 4096
_MAX_PACKS = 32
_SAFE_CONFIG = (
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.askPass=",
    "credential.helper=",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "http.followRedirects=false",
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=30",
    "gc.auto=0",
    "maintenance.auto=false",
    "transfer.fsckObjects=true",
)
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    oid: str
    size: int
    path: str


@dataclass(frozen=True)
class TreePlan:
    files: tuple[TreeEntry, ...]
    total_bytes: int


class GitSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.git_dir
        self.mirrors = self.root / "mirrors"
        self.hosted = self.root / "hosted"
        self.home = self.root / "home"
        self.blobs = self.root / "blobs"
        # Built (and its paths checked) once, so bad ssh settings stop the service at start.
        self.ssh_command = ssh_command(settings)
        self._blob_lock = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Branch names git's check-ref-format accepted: a name is checked by git once, not per deploy.
        self._valid_refs: set[str] = set()

    def lock(self, git_dir: Path) -> threading.Lock:
        """One fetch at a time per mirror (two sites may share a repository)."""
        with self._locks_guard:
            return self._locks.setdefault(git_dir, threading.Lock())

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ALLOW_PROTOCOL": "https:http:ssh",
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": self.ssh_command,
            "GIT_SSH_VARIANT": "ssh",
            "GIT_LFS_SKIP_SMUDGE": "1",
        }

    def git(self, git_dir: Path, *args: str, input_bytes: bytes | None = None, timeout: float | None = None) -> bytes:
        argv = [self.settings.git_binary, f"--git-dir={git_dir}"]
        for item in _SAFE_CONFIG:
            argv += ["-c", item]
        result = runner.run(
            argv + list(args),
            env=self.env(),
            cwd=git_dir,
            timeout=timeout or self.settings.git_timeout,
            input_bytes=input_bytes,
        )
        return result.stdout

    # -- refs and mirrors ------------------------------------------------------------------------
    def check_ref(self, branch: str) -> str:
        """Our allow-list, then git's own check-ref-format."""
        branch = check_branch(branch)
        if branch in self._valid_refs:
            return branch
        try:
            runner.run(
                [self.settings.git_binary, "check-ref-format", f"refs/heads/{branch}"],
                env=self.env(),
                timeout=10,
            )
        except CommandError:
            raise GitError(f'"{branch}" is not a valid branch name', field="branch") from None
        if len(self._valid_refs) >= _MAX_VALID_REFS:
            self._valid_refs.clear()
        self._valid_refs.add(branch)
        return branch

    def mirror_path(self, repo: RepoUrl) -> Path:
        if repo.hosted_name:
            return self.hosted_path(repo.hosted_name)
        digest = hashlib.sha256(repo_key(repo.text).encode()).hexdigest()[:32]
        return self.mirrors / f"{digest}.git"

    def hosted_path(self, name: str) -> Path:
        return self.hosted / f"{name}.git"

    def ensure_bare(self, path: Path) -> None:
        if (path / "HEAD").exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        runner.run(
            [self.settings.git_binary, "init", "--quiet", "--bare", "--initial-branch=main", "--", str(path)],
            env=self.env(),
            timeout=30,
        )

    def fetch(self, repo: RepoUrl, branch: str) -> str:
        """The head commit of `branch`: fetched into the mirror (incrementally), or read from a hosted repo."""
        branch = self.check_ref(branch)
        git_dir = self.mirror_path(repo)
        if not repo.is_hosted:
            with self.lock(git_dir):
                fetched = self._fetch(git_dir, repo, branch)
            if fetched is not None:
                return fetched
        elif not (git_dir / "HEAD").exists():
            raise GitError(f'the hosted repository "{repo.hosted_name}" has not been pushed to yet')
        try:
            out = self.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{branch}")
        except CommandError:
            raise GitError(f'branch "{branch}" does not exist in {repo.shown}', field="branch") from None
        sha = out.decode().strip()
        if not _SHA.fullmatch(sha):
            raise GitError(f'branch "{branch}" of {repo.shown} could not be resolved')
        return sha

    def _fetch(self, git_dir: Path, repo: RepoUrl, branch: str) -> str | None:
        """Fetch one branch; return the commit it fetched (from FETCH_HEAD: no rev-parse needed)."""
        self.ensure_bare(git_dir)
        fetch_head = git_dir / "FETCH_HEAD"
        fetch_head.unlink(missing_ok=True)  # never read an older fetch's answer
        try:
            self.git(
                git_dir,
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--",
                repo.text,
                f"+refs/heads/{branch}:refs/heads/{branch}",
            )
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, branch), repo=repo.shown) from None
        self._check_size(git_dir, repo)
        return fetched_commit(fetch_head)

    def remote_head(self, repo: RepoUrl, branch: str) -> str | None:
        """The commit a branch points at now, without fetching objects (for polling)."""
        branch = self.check_ref(branch)
        if repo.is_hosted:
            try:
                out = self.git(self.mirror_path(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
            except CommandError:
                return None
            return out.decode().strip() or None
        git_dir = self.mirror_path(repo)
        self.ensure_bare(git_dir)
        try:
            out = self.git(git_dir, "ls-remote", "--heads", "--", repo.text, f"refs/heads/{branch}", timeout=60)
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, branch), repo=repo.shown) from None
        for line in out.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}" and _SHA.fullmatch(sha):
                return sha
        return None

    def remote_heads(self, repo: RepoUrl) -> dict[str, str]:
        """Every branch and the commit it points at now, without fetching objects (for polling)."""
        git_dir = self.mirror_path(repo)
        if repo.is_hosted:
            if not (git_dir / "HEAD").exists():
                return {}
            out = self.git(git_dir, "for-each-ref", "--format=%(objectname)%09%(refname)", "refs/heads/")
        else:
            self.ensure_bare(git_dir)
            try:
                out = self.git(git_dir, "ls-remote", "--heads", "--", repo.text, timeout=60)
            except CommandError as exc:
                raise GitError(_fetch_reason(exc, repo, ""), repo=repo.shown) from None
        heads = {}
        for line in out.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/") and _SHA.fullmatch(sha):
                heads[ref[len("refs/heads/") :]] = sha
        return heads

    def fold_packs(self, repo: RepoUrl, *, limit: int = _MAX_PACKS) -> bool:
        """Combine the small packs incremental fetches leave behind (one per fetch: transfer.fsckObjects
        keeps every fetched pack), so object lookups do not slow down with the number of deploys.

        Geometric repacking rewrites only the small packs, not the large first one. Run after a deploy
        went live, never on its path; hosted repositories are left to git's own receive-pack.
        """
        if repo.is_hosted:
            return False
        git_dir = self.mirror_path(repo)
        try:
            packs = sum(1 for entry in os.scandir(git_dir / "objects" / "pack") if entry.name.endswith(".pack"))
        except OSError:
            return False
        if packs <= limit:
            return False
        with self.lock(git_dir):
            self.git(git_dir, "repack", "--geometric=2", "-d", "-q")
        return True

    def _check_size(self, git_dir: Path, repo: RepoUrl) -> None:
        total = _bytes_under(git_dir / "objects")
        if total > self.settings.max_repository_bytes:
            shutil.rmtree(git_dir, ignore_errors=True)
            raise GitError(
                f"{repo.shown} is larger than {self.settings.max_repository_bytes} bytes", limit="max_repository_bytes"
            )

    # -- the tree of one commit ------------------------------------------------------------------
    def plan_tree(self, git_dir: Path, commit: str, path: str, limits: ArchiveLimits) -> TreePlan:
        """Which blobs to publish: regular files only, no dotfiles, within the caps."""
        path = check_repo_path(path)
        if not _SHA.fullmatch(commit):
            raise GitError("the commit to deploy is not a full commit id")
        tree = f"{commit}:{path}" if path else commit
        try:
            listing = self.git(git_dir, "ls-tree", "-r", "-z", "-l", "--full-tree", "--end-of-options", tree)
        except CommandError:
            if not path:
                raise
            self._explain_path(git_dir, commit, path)
            raise
        return plan_listing(listing, limits)

    def _explain_path(self, git_dir: Path, commit: str, path: str) -> None:
        """Why `commit:path` could not be listed, as a sentence for users (only after a failure)."""
        try:
            oid = self.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}:{path}")
            kind = self.git(git_dir, "cat-file", "-t", oid.decode().strip())
        except CommandError:
            raise GitError(f'path "{path}" does not exist in the commit', field="path") from None
        if kind.strip() != b"tree":
            raise GitError(f'path "{path}" is not a folder in the commit', field="path")

    def write_tree(self, git_dir: Path, plan: TreePlan, destination: Path) -> int:
        """Fill a fresh destination with the planned files: hard links into the blob store.

        Each blob is written once to <data>/git/blobs/<oid> (so a push changing one file writes one
        file); release files are hard links to it, never symbolic links. Releases are never modified.
        A cached blob is found by linking it (no stat first); only the blobs whose link failed are
        read from git. Returns how many files had to be copied instead (another filesystem).
        """
        destination.mkdir(mode=0o755, parents=False, exist_ok=False)
        self.blobs.mkdir(parents=True, exist_ok=True)
        writer = _TreeWriter(self.blobs, destination)
        with self._blob_lock:
            missing = [entry for entry in plan.files if not writer.link(entry)]
            unique = {entry.oid: entry for entry in missing}
            for batch in _batches(tuple(unique.values())):
                self._store_blobs(git_dir, batch)
            for entry in missing:
                if not writer.link(entry):
                    raise GitError(f"the file {show(entry.path)} could not be read from the repository")
        return writer.copied

    def _store_blobs(self, git_dir: Path, batch: list[TreeEntry]) -> None:
        out = self.git(git_dir, "cat-file", "--batch", input_bytes="".join(f"{e.oid}\n" for e in batch).encode())
        offset = 0
        blobs = f"{self.blobs}/"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for entry in batch:
            end = out.index(b"\n", offset)
            header = out[offset:end].split(b" ")
            if len(header) != 3 or header[1] != b"blob" or int(header[2]) != entry.size:
                raise GitError(f"the file {show(entry.path)} could not be read from the repository")
            data = memoryview(out)[end + 1 : end + 1 + entry.size]
            offset = end + 1 + entry.size + 1
            partial = f"{blobs}{entry.oid}.partial"
            # Read-only from the start: the blob is hard-linked into sealed releases. (A partial a
            # crash left is read-only too, and O_TRUNC could not reopen it: remove it first.)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            fd = os.open(partial, flags, 0o444)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
            os.replace(partial, blobs + entry.oid)

    def prune_blobs(self) -> int:
        """Remove stored blobs no release links to any more (link count 1)."""
        if not self.blobs.is_dir():
            return 0
        removed = 0
        with self._blob_lock:
            for blob in self.blobs.iterdir():
                if blob.name.endswith(".partial") or blob.lstat().st_nlink <= 1:
                    blob.unlink(missing_ok=True)
                    removed += 1
        return removed


def plan_listing(listing: bytes, limits: ArchiveLimits) -> TreePlan:
    """Parse `git ls-tree -r -z -l` output and apply the ZIP rules (pure)."""
    files: list[TreeEntry] = []
    total = 0
    records = [r for r in listing.split(b"\0") if r]
    if len(records) > limits.max_entries:
        raise GitError(f"the tree has more than {limits.max_entries} entries", limit="max_entries")
    for record in records:
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        if not _SHA.fullmatch(oid):
            raise GitError("the tree listing could not be read")
        try:
            name = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            raise GitError("the tree has a file name that is not UTF-8") from None
        if mode in (MODE_SYMLINK, MODE_SUBMODULE) or kind != "blob":
            # links and submodules are never published
            continue
        try:
            parts = check_entry_name(name, limits)
        except DrophostError as exc:
            raise GitError(exc.message.replace("the entry", "the file").replace("the archive", "the tree")) from None
        if any(part.startswith(".") for part in parts):
            # dotfiles (.git*, .env) are never published
            continue
        total += int(size)
        if total > limits.max_unpacked_bytes:
            raise GitError(f"the tree holds more than {limits.max_unpacked_bytes} bytes", limit="max_unpacked_bytes")
        files.append(TreeEntry(mode=mode, oid=oid, size=int(size), path=name))
    if not files:
        raise GitError("the tree contains no files to publish")
    return TreePlan(files=tuple(files), total_bytes=total)


def _batches(entries: tuple[TreeEntry, ...]) -> list[list[TreeEntry]]:
    batches: list[list[TreeEntry]] = [[]]
    size = 0
    for entry in entries:
        if batches[-1] and size + entry.size > _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += entry.size
    return batches


class _TreeWriter:
    """Hard links from the blob cache into a fresh release tree, folders made once each.

    Paths are plain strings joined to the destination this writer made itself, so no component can
    be a symbolic link; names were checked by plan_listing (no "", ".", ".." components).
    """

    def __init__(self, blobs: Path, destination: Path) -> None:
        self.blobs = f"{blobs}/"
        self.root = f"{destination}/"
        self.folders: set[str] = {""}
        self.copied = 0

    def link(self, entry: TreeEntry) -> bool:
        """Link one planned file; False if its blob is not cached yet."""
        folder = entry.path.rpartition("/")[0]
        if folder not in self.folders:
            self._make_folder(folder)
        blob = self.blobs + entry.oid
        target = self.root + entry.path
        try:
            os.link(blob, target, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy(blob, target)
            self.copied += 1
        return True

    def _make_folder(self, folder: str) -> None:
        parent = folder.rpartition("/")[0]
        if parent not in self.folders:
            self._make_folder(parent)
        os.mkdir(self.root + folder, 0o755)
        self.folders.add(folder)


def _copy(blob: str, target: str) -> None:
    # releases/ on another filesystem than git/: copy, still refusing to follow or replace anything
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    with open(blob, "rb") as source, os.fdopen(os.open(target, flags, 0o444), "wb") as out:
        shutil.copyfileobj(source, out)


def fetched_commit(fetch_head: Path) -> str | None:
    """The commit a one-branch fetch got: FETCH_HEAD's first line starts with it (None if unreadable)."""
    try:
        first = fetch_head.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return None
    sha = first.split(b"\t", 1)[0].decode("ascii", "replace")
    return sha if _SHA.fullmatch(sha) else None


def _bytes_under(root: Path) -> int:
    """Bytes of the regular files under root (loose objects pile up: one walk, no Path objects)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _fetch_reason(exc: CommandError, repo: RepoUrl, branch: str) -> str:
    """A sentence for users: classified from git's output, which is never shown itself."""
    output = exc.output.lower()
    where = strip_credentials(repo.text)
    if exc.returncode is None and "timed out" in exc.message:
        return f"fetching {where} timed out"
    reason = ssh_reason(output, where)
    if reason:
        return reason
    if "couldn't find remote ref" in output:
        return f'branch "{branch}" does not exist in {where}'
    if "authentication" in output or "could not read username" in output or "permission denied" in output:
        return f"{where} needs credentials DropHost does not have"
    if "not found" in output or "does not appear to be a git repository" in output:
        return f"the repository {where} was not found"
    if "redirect" in output or re.search(r"returned error: 30[12378]\b", output):
        return f"{where} answered with a redirect, which DropHost does not follow"
    if "could not resolve host" in output or "connection refused" in output or "failed to connect" in output:
        return f"the server of {where} could not be reached"
    return f"fetching {where} failed (git exited with status {exc.returncode})"

"""Git as a source: one bare mirror per repository, fetched incrementally (tree.py reads its commits).

The refs git wrote into our own repositories (mirrors and hosted) are read by GitPython, from the
ref files, without a process: 0.2 ms against 5 ms for `git rev-parse` (bench/gitpython_read.py).
Everything else, and all that talks to a remote, is git itself. Every git call goes through
runner.run with a fixed argv, `--` before positionals, a protocol allow-list,
hooks/fsmonitor/submodules/LFS/prompts/redirects off, and a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO

from git import Repo
from git.exc import InvalidGitRepositoryError, NoSuchPathError
from git.refs import Head, SymbolicReference, TagReference

from drophost import runner
from drophost.errors import CommandError, GitError
from drophost.gitops.refs import TAGS_PREFIX, is_pull_ref, tag_of
from drophost.gitops.repourls import RepoUrl, check_branch, repo_key, strip_credentials
from drophost.gitops.ssh import ssh_command, ssh_reason
from drophost.settings import Settings

# A full object id (SHA-1, or SHA-256 for repositories that use it).
SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_MAX_VALID_REFS = 4096
_MAX_REPOS = 256
# A ref GitPython cannot read: missing, an invalid name, not UTF-8 (ValueError), an empty file
# (AssertionError), or a repository that is not there.
_UNREADABLE_REF = (ValueError, AssertionError, IndexError, OSError, InvalidGitRepositoryError, NoSuchPathError)
_MAX_PACKS = 32
# How often the mirror's size is measured while a fetch runs: git is killed within this much of
# passing the cap (what a LAN delivers in 20 ms, about 2 MiB, at most).
_SIZE_POLL_SECONDS = 0.02
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
# The objects of a hosted push whose pre-receive hook is deploying it: git keeps them in a quarantine
# folder until the hook accepts the push, so the deploy's git calls read that folder as an alternate.
# Set per thread (the worker's, for one job), never for the whole service.
_incoming: ContextVar[Path | None] = ContextVar("drophost_incoming_objects", default=None)


class GitSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.git_dir
        self.mirrors = self.root / "mirrors"
        self.hosted = self.root / "hosted"
        self.home = self.root / "home"
        # Built (and its paths checked) once, so bad ssh settings stop the service at start.
        self.ssh_command = ssh_command(settings)
        self._locks: dict[Path, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Branch names git's check-ref-format accepted: a name is checked by git once, not per deploy.
        self._valid_refs: set[str] = set()
        # The access token for a repository (token_env in deploy.yaml), asked for at each fetch.
        self.tokens: Callable[[RepoUrl], str | None] = lambda repo: None
        # Kept per repository: making a Repo costs more than reading a ref (bench/gitpython_read.py).
        self._repos: dict[Path, Repo] = {}

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
            **({"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(incoming)} if (incoming := _incoming.get()) else {}),
        }

    @contextmanager
    def reading_incoming(self, objects: Path | None) -> Iterator[None]:
        """Within this block, this thread's git calls also read a push's quarantined objects."""
        token = _incoming.set(objects)
        try:
            yield
        finally:
            _incoming.reset(token)

    def git(
        self,
        git_dir: Path,
        *args: str,
        input_bytes: bytes | None = None,
        timeout: float | None = None,
        remote: RepoUrl | None = None,
        env: Mapping[str, str] | None = None,
    ) -> bytes:
        result = runner.run(
            self._argv(git_dir, args),
            env={**self.env(), **(self.auth_env(remote) if remote else {}), **(env or {})},
            cwd=git_dir,
            timeout=timeout or self.settings.git_timeout,
            input_bytes=input_bytes,
        )
        return result.stdout

    @contextmanager
    def git_stream(self, git_dir: Path, *args: str, input_bytes: bytes | None = None) -> Iterator[IO[bytes]]:
        """git's output to read as it comes: what a repository holds is never all in memory, and git
        is killed as soon as the reader stops at a cap (or at the git timeout)."""
        with runner.stream(
            self._argv(git_dir, args),
            env=self.env(),
            cwd=git_dir,
            timeout=self.settings.git_timeout,
            input_bytes=input_bytes,
        ) as stdout:
            yield stdout

    def _argv(self, git_dir: Path, args: tuple[str, ...]) -> list[str]:
        argv = [self.settings.git_binary, f"--git-dir={git_dir}"]
        for item in _SAFE_CONFIG:
            argv += ["-c", item]
        return argv + list(args)

    def auth_env(self, repo: RepoUrl) -> dict[str, str]:
        """A private https repository's token as an HTTP header for that URL only, through git's
        environment (GIT_CONFIG_*): never on a command line (visible to every user), in a file or a URL."""
        token = self.tokens(repo)
        if not token:
            return {}
        credentials = token if ":" in token else f"x-access-token:{token}"
        header = "Authorization: Basic " + base64.b64encode(credentials.encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{repo.text}.extraHeader",
            "GIT_CONFIG_VALUE_0": header,
        }

    # -- refs and mirrors ------------------------------------------------------------------------
    def _repo(self, git_dir: Path) -> Repo:
        with self._locks_guard:
            repo = self._repos.get(git_dir)
            if repo is None:
                if len(self._repos) >= _MAX_REPOS:
                    self._repos.clear()
                repo = self._repos[git_dir] = Repo(git_dir)
            return repo

    def local_head(self, git_dir: Path, branch: str) -> str | None:
        """What refs/heads/<branch> of one of our repositories points at (None: no such branch)."""
        try:
            return SymbolicReference.dereference_recursive(self._repo(git_dir), f"refs/heads/{branch}") or None
        except _UNREADABLE_REF:
            return None

    def local_heads(self, git_dir: Path) -> dict[str, str]:
        """Every branch of one of our repositories (loose and packed) and its commit, sorted by name."""
        repo = self._repo(git_dir)
        heads = {}
        for head in Head.iter_items(repo):
            try:
                sha = SymbolicReference.dereference_recursive(repo, head.path)
            except _UNREADABLE_REF:
                continue  # as for-each-ref: a broken ref or a lock file is no branch
            if head.path.startswith("refs/heads/") and SHA.fullmatch(sha):
                heads[head.path[len("refs/heads/") :]] = sha
        return heads

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

    def peel(self, git_dir: Path, oid: str) -> str:
        """The commit an object names: itself, or the commit an annotated tag points at."""
        if not SHA.fullmatch(oid):
            raise GitError("the pushed object is not a full object id")
        try:
            out = self.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{oid}^{{commit}}")
        except CommandError:
            raise GitError(f"the pushed object {oid[:12]} is not a commit") from None
        commit = out.decode("ascii", "replace").strip()
        if not SHA.fullmatch(commit):
            raise GitError(f"the pushed object {oid[:12]} is not a commit")
        return commit

    def tree_id(self, git_dir: Path, commit: str, path: str) -> str | None:
        """The id of what a commit holds at `path` (None: nothing there, or the commit is not in our copy)."""
        spec = f"{commit}:{path}" if path else f"{commit}^{{tree}}"
        try:
            out = self.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", spec, timeout=30)
        except CommandError:
            return None
        oid = out.decode("ascii", "replace").strip()
        return oid if SHA.fullmatch(oid) else None

    def check_full_ref(self, ref: str) -> str:
        """A tag or pull-request head to fetch: our allow-list (the branch rules for a tag's name),
        then git's check-ref-format."""
        tag = tag_of(ref)
        if tag is not None:
            check_branch(tag, field="tag")
        elif ref.startswith("refs/heads/"):
            check_branch(ref[len("refs/heads/") :])
        elif not is_pull_ref(ref):
            raise GitError(f"{ref[:100]!r} is not a ref DropHost fetches")
        if ref in self._valid_refs:
            return ref
        try:
            runner.run([self.settings.git_binary, "check-ref-format", ref], env=self.env(), timeout=10)
        except CommandError:
            raise GitError(f'"{ref[:100]}" is not a valid ref name') from None
        if len(self._valid_refs) >= _MAX_VALID_REFS:
            self._valid_refs.clear()
        self._valid_refs.add(ref)
        return ref

    def _full_ref(self, branch: str, ref: str | None) -> str:
        return self.check_full_ref(ref) if ref is not None else f"refs/heads/{self.check_ref(branch)}"

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

    def fetch(self, repo: RepoUrl, branch: str, *, ref: str | None = None) -> str:
        """The head commit of `branch` (or of `ref`, a tag or a pull request's head): fetched into the
        mirror (incrementally), or read from a hosted repo."""
        full = self._full_ref(branch, ref)
        branch = full.removeprefix("refs/heads/")
        git_dir = self.mirror_path(repo)
        sha: str | None = None
        if not repo.is_hosted:
            with self.lock(git_dir):
                sha = self._fetch(git_dir, repo, branch, full)
        elif not (git_dir / "HEAD").exists():
            raise GitError(f'the hosted repository "{repo.hosted_name}" has not been pushed to yet')
        if sha is None:
            sha = self._local_ref(git_dir, full)
        if sha is None:
            raise GitError(f"{_what(full)} does not exist in {repo.shown}", field="branch")
        if not SHA.fullmatch(sha):
            raise GitError(f"{_what(full)} of {repo.shown} could not be resolved")
        # An annotated tag names a tag object: what is deployed (and recorded) is its commit.
        return self._peel(git_dir, sha) if full.startswith(TAGS_PREFIX) else sha

    def _local_ref(self, git_dir: Path, full: str) -> str | None:
        try:
            return SymbolicReference.dereference_recursive(self._repo(git_dir), full) or None
        except _UNREADABLE_REF:
            return None

    def _peel(self, git_dir: Path, sha: str) -> str:
        try:
            out = self.git(git_dir, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", timeout=30)
        except CommandError:
            raise GitError("the tag does not point at a commit") from None
        peeled = out.decode("ascii", "replace").strip()
        if not SHA.fullmatch(peeled):
            raise GitError("the tag does not point at a commit")
        return peeled

    def _fetch(self, git_dir: Path, repo: RepoUrl, branch: str, full: str | None = None) -> str | None:
        """Fetch the branch's head commit and only what it needs (shallow: no history), measuring the
        mirror while git writes so it never grows far past the size cap; return the commit (from
        FETCH_HEAD: no rev-parse needed).

        Later fetches stay incremental: git sends only the objects the mirror's commits lack.
        """
        self.ensure_bare(git_dir)
        fetch_head = git_dir / "FETCH_HEAD"
        fetch_head.unlink(missing_ok=True)  # never read an older fetch's answer
        objects = git_dir / "objects"
        # Everything a fetch writes lands in one pack (unpackLimit=1: never loose objects), so while it
        # runs only objects/pack/ is measured, a few files, often; the rest was measured once here.
        packs = objects / "pack"
        settled = _bytes_under(objects) - _bytes_in(packs)
        argv = self._argv(
            git_dir,
            (
                "-c",
                "fetch.unpackLimit=1",
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--depth=1",
                "--",
                repo.text,
                f"+{full or 'refs/heads/' + branch}:{full or 'refs/heads/' + branch}",
            ),
        )
        try:
            runner.watched(
                argv,
                watch=lambda: self._refuse_above(settled + _bytes_in(packs), repo),
                interval=_SIZE_POLL_SECONDS,
                env={**self.env(), **self.auth_env(repo)},
                cwd=git_dir,
                timeout=self.settings.git_timeout,
            )
            self._refuse_above(_bytes_under(objects), repo)
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, branch), repo=repo.shown) from None
        except GitError:
            _remove(git_dir)  # after git and its helpers were killed: nothing writes any more
            raise
        return fetched_commit(fetch_head)

    def remote_head(self, repo: RepoUrl, branch: str, *, ref: str | None = None) -> str | None:
        """The commit a branch (or a tag, or a pull request's head) points at now, without fetching
        objects (for polling)."""
        full = self._full_ref(branch, ref)
        if full.startswith(TAGS_PREFIX):
            return self.remote_tags(repo).get(full[len(TAGS_PREFIX) :])
        if repo.is_hosted:
            return self._local_ref(self.mirror_path(repo), full)
        git_dir = self.mirror_path(repo)
        self.ensure_bare(git_dir)
        kind = ("--heads",) if full.startswith("refs/heads/") else ()
        try:
            out = self.git(git_dir, "ls-remote", *kind, "--", repo.text, full, timeout=60, remote=repo)
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, full.removeprefix("refs/heads/")), repo=repo.shown) from None
        for line in out.decode(errors="replace").splitlines():
            sha, _, name = line.partition("\t")
            if name == full and SHA.fullmatch(sha):
                return sha
        return None

    def remote_tags(self, repo: RepoUrl) -> dict[str, str]:
        """Every tag and the commit it points at now (annotated tags peeled), without fetching objects."""
        git_dir = self.mirror_path(repo)
        if repo.is_hosted:
            return self._local_tags(git_dir) if (git_dir / "HEAD").exists() else {}
        self.ensure_bare(git_dir)
        try:
            out = self.git(git_dir, "ls-remote", "--tags", "--", repo.text, timeout=60, remote=repo)
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, ""), repo=repo.shown) from None
        tags: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in out.decode(errors="replace").splitlines():
            sha, _, name = line.partition("\t")
            if not name.startswith(TAGS_PREFIX) or not SHA.fullmatch(sha):
                continue
            tag = name[len(TAGS_PREFIX) :]
            if tag.endswith("^{}"):
                peeled[tag[:-3]] = sha
            else:
                tags[tag] = sha
        return {tag: peeled.get(tag, sha) for tag, sha in tags.items()}

    def _local_tags(self, git_dir: Path) -> dict[str, str]:
        repo = self._repo(git_dir)
        tags = {}
        for tag in TagReference.iter_items(repo):
            try:
                sha = tag.commit.hexsha
            except (*_UNREADABLE_REF, TypeError):
                continue  # a tag of a tree or blob, or a broken ref: nothing to deploy
            if tag.path.startswith(TAGS_PREFIX) and SHA.fullmatch(sha):
                tags[tag.path[len(TAGS_PREFIX) :]] = sha
        return tags

    def remote_heads(self, repo: RepoUrl) -> dict[str, str]:
        """Every branch and the commit it points at now, without fetching objects (for polling)."""
        git_dir = self.mirror_path(repo)
        if repo.is_hosted:
            if not (git_dir / "HEAD").exists():
                return {}
            return self.local_heads(git_dir)
        self.ensure_bare(git_dir)
        try:
            out = self.git(git_dir, "ls-remote", "--heads", "--", repo.text, timeout=60, remote=repo)
        except CommandError as exc:
            raise GitError(_fetch_reason(exc, repo, ""), repo=repo.shown) from None
        heads = {}
        for line in out.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/") and SHA.fullmatch(sha):
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

    def _refuse_above(self, total: int, repo: RepoUrl) -> None:
        if total > self.settings.max_repository_bytes:
            raise GitError(
                f"{repo.shown} is larger than {self.settings.max_repository_bytes} bytes", limit="max_repository_bytes"
            )


def fetched_commit(fetch_head: Path) -> str | None:
    """The commit a one-branch fetch got: FETCH_HEAD's first line starts with it (None if unreadable)."""
    try:
        first = fetch_head.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return None
    sha = first.split(b"\t", 1)[0].decode("ascii", "replace")
    return sha if SHA.fullmatch(sha) else None


def _bytes_under(root: Path) -> int:
    """Bytes of the regular files under root (loose objects pile up: one walk, no Path objects).

    Also measured while git writes (incoming packs in objects/pack/tmp_*): a file that goes away
    between the listing and the lstat is simply not counted.
    """
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                info = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _bytes_in(folder: Path) -> int:
    """Bytes of the regular files directly in folder (a pack being received grows here)."""
    total = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
    return total


def _remove(git_dir: Path) -> None:
    """Remove a mirror, even while a killed git's last writes land (a few tries, then give up)."""
    for _ in range(5):
        shutil.rmtree(git_dir, ignore_errors=True)
        if not git_dir.exists():
            return
        time.sleep(0.05)


def _what(full: str) -> str:
    """A ref as messages name it: branch "main", tag "v1.2", pull request ref "refs/pull/7/head"."""
    if full.startswith("refs/heads/"):
        return f'branch "{full[len("refs/heads/") :]}"'
    tag = tag_of(full)
    return f'tag "{tag}"' if tag is not None else f'ref "{full}"'


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
        shown = _what(branch) if branch.startswith("refs/") else f'branch "{branch}"'
        return f"{shown} does not exist in {where}"
    if "authentication" in output or "could not read username" in output or "permission denied" in output:
        return f"{where} needs credentials DropHost does not have"
    if "not found" in output or "does not appear to be a git repository" in output:
        return f"the repository {where} was not found"
    if "redirect" in output or re.search(r"returned error: 30[12378]\b", output):
        return f"{where} answered with a redirect, which DropHost does not follow"
    if "could not resolve host" in output or "connection refused" in output or "failed to connect" in output:
        return f"the server of {where} could not be reached"
    return f"fetching {where} failed (git exited with status {exc.returncode})"

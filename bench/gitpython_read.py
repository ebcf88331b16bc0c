"""GitPython against DropHost's git runner, reading one repository: `.venv/bin/python -m bench.gitpython_read`.

The 1,000-file, 26 MB site of the other benchmarks is pushed into a hosted repository that
DropHost made itself (GitSource.ensure_bare: its own bare repository, its own config), so git
keeps it as one pack, as a real push or fetch leaves it. Then, side by side in each round (the
order of the sides alternating), the three reads a deploy makes:

- the ref: `refs/heads/main` to a commit id. Runner: `git rev-parse --verify` (GitSource.fetch of a
  hosted repository). GitPython: SymbolicReference.dereference_recursive (reads the ref files).
- the tree listing: every file of the commit with its mode, id and size, through parse_listing's
  rules. Runner: Trees.list_tree (`git ls-tree -r -z -l`). GitPython: the commit's tree traversed,
  each blob's size from the object database, written as ls-tree's records for the same rules.
- the blobs: the contents of all 1,000 files. Runner: one `git cat-file --batch` (Trees._store_blobs
  reads its batches so). GitPython: odb.stream(oid).read() per blob.

GitPython runs with each of its object databases: GitCmdObjectDB (persistent `git cat-file`
processes) and GitDB (pure Python reading of packs). "kept": one Repo for the whole run, its
object database warm (what a service would hold per repository); "new": a Repo made for each read,
as a deploy of a repository not read for a while would. Medians of ROUNDS rounds; the ratio is
GitPython's median over the runner's (below 1: GitPython is faster).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import git
from git.refs import SymbolicReference
from tests.harness.scratch import scratch_dir

from bench.report import machine_summary
from bench.site import generate_site
from drophost import runner
from drophost.gitops.mirror import GitSource
from drophost.gitops.tree import TreeListing, Trees, parse_listing
from drophost.pipeline.archive import ArchiveLimits
from drophost.settings import Settings

SEED = 2026  # the site of bench.core and bench.gitops
FILES = 1000
ROUNDS = 7
REF_READS = 50  # per round and side: one read takes about a millisecond or less
COMMIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.lan",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.lan",
}
Read = Callable[[], object]
ODBTS: dict[str, type] = {"cmd": git.GitCmdObjectDB, "gitdb": git.GitDB}


def make_repository(root: Path) -> tuple[Trees, Path, str]:
    """A hosted repository of DropHost's with the site committed on main; its Trees and head."""
    data = root / "data"
    data.mkdir()
    trees = Trees(GitSource(Settings(data_dir=data)))
    git_dir = trees.source.hosted_path("site")
    trees.source.ensure_bare(git_dir)
    work = root / "work"
    for item in generate_site(SEED, files=FILES):
        target = work / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.data)
    for argv in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "-A"],
        ["commit", "--quiet", "-m", "site"],
        ["push", "--quiet", str(git_dir), "main:main"],
    ):
        runner.run(["git", *argv], cwd=work, env=COMMIT_ENV, timeout=300)
    head = runner.run(["git", "rev-parse", "HEAD"], cwd=work, env=COMMIT_ENV).stdout.decode().strip()
    return trees, git_dir, head


def ref_by_runner(trees: Trees, git_dir: Path) -> str:
    out = trees.source.git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", "refs/heads/main")
    return out.decode().strip()


def ref_by_gitpython(repo: git.Repo) -> str:
    return SymbolicReference.dereference_recursive(repo, "refs/heads/main")


def heads_by_runner(trees: Trees, git_dir: Path) -> bytes:
    return trees.source.git(git_dir, "for-each-ref", "--format=%(objectname)%09%(refname)", "refs/heads/")


def listing_by_gitpython(repo: git.Repo, commit: str, limits: ArchiveLimits) -> TreeListing:
    records = []
    for item in repo.commit(commit).tree.traverse(branch_first=False):  # depth first, as ls-tree -r
        if isinstance(item, git.Blob):
            records.append(f"{item.mode:06o} blob {item.hexsha} {item.size}\t{item.path}\0".encode())
    return parse_listing(b"".join(records), limits)


def blobs_by_runner(trees: Trees, git_dir: Path, oids: list[str]) -> int:
    out = trees.source.git(git_dir, "cat-file", "--batch", input_bytes="".join(f"{oid}\n" for oid in oids).encode())
    return len(out)


def blobs_by_gitpython(repo: git.Repo, oids: list[str]) -> int:
    return sum(len(repo.odb.stream(bytes.fromhex(oid)).read()) for oid in oids)


def fresh(git_dir: Path, odbt: type, read: Callable[[git.Repo], object]) -> Read:
    """A read through a Repo made for it (and closed: no cat-file process outlives it)."""

    def run() -> object:
        repo = git.Repo(git_dir, odbt=odbt)
        try:
            return read(repo)
        finally:
            repo.close()

    return run


def timed(read: Read, times: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(times):
        read()
    return (time.perf_counter() - started) / times


def main() -> None:
    # GitPython 3.2 deprecates its GitDB backend ("security and performance issues"); measured anyway.
    warnings.filterwarnings("ignore", "GitDB is deprecated", DeprecationWarning)
    with scratch_dir("dh-gitpython-") as root:
        trees, git_dir, head = make_repository(root)
        limits = ArchiveLimits()
        expected = trees.list_tree(git_dir, head, "", limits)
        oids = sorted({entry.oid for entry in expected.files})
        kept = {name: git.Repo(git_dir, odbt=odbt) for name, odbt in ODBTS.items()}
        try:
            # Each side must read what the runner reads before anything is timed.
            for repo in kept.values():
                assert ref_by_gitpython(repo) == head == ref_by_runner(trees, git_dir)
                assert trees.source.local_head(git_dir, "main") == head
                assert trees.source.local_heads(git_dir) == {"main": head}
                assert listing_by_gitpython(repo, head, limits) == expected
                assert blobs_by_gitpython(repo, oids) == sum(entry.size for entry in expected.files)
            measure(trees, git_dir, head, limits, oids, kept)
        finally:
            for repo in kept.values():
                repo.close()


def measure(
    trees: Trees, git_dir: Path, head: str, limits: ArchiveLimits, oids: list[str], kept: dict[str, git.Repo]
) -> None:
    operations: dict[str, dict[str, tuple[Read, int]]] = {
        "ref refs/heads/main": {
            "runner": (lambda: ref_by_runner(trees, git_dir), REF_READS),
            "GitSource.local_head": (lambda: trees.source.local_head(git_dir, "main"), REF_READS),
            **{f"{name} kept": (partial(ref_by_gitpython, repo), REF_READS) for name, repo in kept.items()},
            **{f"{name} new": (fresh(git_dir, ODBTS[name], ref_by_gitpython), REF_READS) for name in ODBTS},
        },
        "every head (refs/heads/*)": {
            "runner": (lambda: heads_by_runner(trees, git_dir), REF_READS),
            "GitSource.local_heads": (lambda: trees.source.local_heads(git_dir), REF_READS),
        },
        "tree listing, 1,000 files": {
            "runner": (lambda: trees.list_tree(git_dir, head, "", limits), 1),
            **{f"{name} kept": (partial(listing_by_gitpython, repo, head, limits), 1) for name, repo in kept.items()},
            **{
                f"{name} new": (fresh(git_dir, ODBTS[name], lambda r: listing_by_gitpython(r, head, limits)), 1)
                for name in ODBTS
            },
        },
        "blobs, 1,000 files, 26 MB": {
            "runner": (lambda: blobs_by_runner(trees, git_dir, oids), 1),
            **{f"{name} kept": (partial(blobs_by_gitpython, repo, oids), 1) for name, repo in kept.items()},
        },
    }
    samples: dict[tuple[str, str], list[float]] = {}
    for number in range(ROUNDS):
        for operation, sides in operations.items():
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for side in order:
                read, times = sides[side]
                samples.setdefault((operation, side), []).append(timed(read, times))
    print(f"GitPython {git.__version__} against the runner (git {git_version()}), median of {ROUNDS} rounds")
    print("| read | side | median | ratio to the runner |")
    print("|---|---|---|---|")
    for operation, sides in operations.items():
        baseline = statistics.median(samples[(operation, "runner")])
        for side in sides:
            value = statistics.median(samples[(operation, side)])
            print(f"| {operation} | {side} | {value * 1000:.2f} ms | {value / baseline:.2f} |")
    print(machine_summary())


def git_version() -> str:
    return runner.run(["git", "--version"]).stdout.decode().split()[-1]


if __name__ == "__main__":
    main()

"""Bounded git work: a git bomb is listed only up to the caps, a fetch is shallow and stops at the
repository size cap while it runs, and a hosted repository refuses both at receive time."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from drophost.errors import GitError
from drophost.gitops.mirror import GitSource
from drophost.gitops.repourls import parse_repo_url
from drophost.gitops.tree import Trees
from drophost.pipeline.archive import ArchiveLimits
from drophost.settings import MiB, Settings
from tests.harness.auth import AUTH, TOKEN
from tests.harness.git import GIT_ENV, HANDBOOK, GitHttpServer, git, push, work_repo
from tests.harness.processes import start_nginx, stop_process
from tests.harness.stacks import GitopsFactory
from tests.harness.waiting import wait_for_deployment, wait_until
from tests.integration.service_process import ServiceProcess

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def plumb(git_dir: Path, *args: str, data: bytes = b"") -> str:
    """One git plumbing command on a repository, with stdin."""
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args],
        input=data,
        env=GIT_ENV,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


def plant_bomb(git_dir: Path, *, levels: int = 9, width: int = 10, leaf: bool = True, branch: str = "main") -> str:
    """A commit of a few kB whose tree names width**levels paths: each level is `width` entries
    pointing at the same tree below. Without a leaf file, it is folders all the way down."""
    if leaf:
        blob = plumb(git_dir, "hash-object", "-w", "--stdin", data=b"boom\n")
        tree = plumb(git_dir, "mktree", data=f"100644 blob {blob}\tf.txt\n".encode())
    else:
        tree = plumb(git_dir, "mktree", "--missing", data=b"")
    for _ in range(levels):
        tree = plumb(git_dir, "mktree", data="".join(f"040000 tree {tree}\td{i}\n" for i in range(width)).encode())
    commit = plumb(git_dir, "commit-tree", tree, "-m", "a git bomb")
    plumb(git_dir, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def plant_random_files(git_dir: Path, *, files: int, size: int, branch: str = "main") -> str:
    """A commit of incompressible files: what it takes on disk is what it weighs."""
    lines = []
    for number in range(files):
        blob = plumb(git_dir, "hash-object", "-w", "--stdin", data=os.urandom(size))
        lines.append(f"100644 blob {blob}\tf{number}.bin\n")
    tree = plumb(git_dir, "mktree", data="".join(lines).encode())
    commit = plumb(git_dir, "commit-tree", tree, "-m", "heavy")
    plumb(git_dir, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def bytes_under(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


@contextmanager
def sampled_size(root: Path) -> Iterator[list[int]]:
    """The largest size of root seen while the block runs, sampled every few milliseconds."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], bytes_under(root))
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def trees_for(tmp_path: Path, **settings: object) -> Trees:
    data = tmp_path / "data"
    data.mkdir()
    return Trees(GitSource(Settings(data_dir=data, **settings)))  # type: ignore[arg-type]


@pytest.mark.parametrize("leaf", [True, False], ids=["files", "folders-only"])
def test_listing_a_git_bomb_stops_at_the_entry_cap(tmp_path: Path, leaf: bool) -> None:
    bare = tmp_path / "bomb.git"
    git("init", "--quiet", "--bare", str(bare))
    commit = plant_bomb(bare, levels=10, leaf=leaf)  # 10^10 paths
    trees = trees_for(tmp_path)
    started = time.monotonic()
    with pytest.raises(GitError, match="^the tree has more than 20000 entries$"):
        trees.list_tree(bare, commit, "", ArchiveLimits())
    # Stopped at the cap, not at the git timeout (a bound, not a benchmark).
    assert time.monotonic() - started < 30


def test_a_git_bomb_stops_at_the_depth_and_size_caps_too(tmp_path: Path) -> None:
    bare = tmp_path / "bomb.git"
    git("init", "--quiet", "--bare", str(bare))
    deep = plant_bomb(bare, levels=40, width=1)
    trees = trees_for(tmp_path)
    with pytest.raises(GitError, match="is nested deeper than 32 folders$"):
        trees.list_tree(bare, deep, "", ArchiveLimits())
    wide = plant_bomb(bare, levels=3, width=10)  # 1,000 files of 5 bytes
    with pytest.raises(GitError, match="^the tree holds more than 4000 bytes$"):
        trees.list_tree(bare, wide, "", ArchiveLimits(max_unpacked_bytes=4000))


def test_a_fetch_is_shallow_and_later_fetches_bring_only_what_changed(
    git_server: GitHttpServer, tmp_path: Path
) -> None:
    repo = git_server.repo("site")
    first = repo.commit({"index.html": "one", "big.txt": "x" * 200_000})
    repo.commit({"index.html": "two"})
    third = repo.commit({"index.html": "three"})
    trees = trees_for(tmp_path)
    url = parse_repo_url(git_server.url("site"))
    assert trees.source.fetch(url, "main") == third
    mirror = trees.source.mirror_path(url)
    # Only the head commit: its parents are not in the mirror.
    assert plumb(mirror, "rev-list", "--count", third) == "1"
    missing = subprocess.run(["git", f"--git-dir={mirror}", "cat-file", "-e", first], env=GIT_ENV, check=False)
    assert missing.returncode != 0
    assert (mirror / "shallow").read_text().split() == [third]
    before = bytes_under(mirror / "objects")
    fourth = repo.commit({"index.html": "four"})
    assert trees.source.fetch(url, "main") == fourth
    # big.txt is not sent again: the second pack holds one small blob, a tree and a commit.
    assert bytes_under(mirror / "objects") - before < 20_000
    listing = trees.list_tree(mirror, fourth, "", ArchiveLimits())
    assert sorted(f.path for f in listing.files) == ["big.txt", "index.html"]
    assert trees.source.fold_packs(url, limit=1)
    assert len(trees.list_tree(mirror, fourth, "", ArchiveLimits()).files) == 2


def test_an_oversized_repository_is_stopped_while_it_is_fetched(git_server: GitHttpServer, tmp_path: Path) -> None:
    repo = git_server.repo("heavy")
    plant_random_files(repo.bare, files=48, size=1 * MiB)
    cap = 2 * MiB
    trees = trees_for(tmp_path, max_repository_bytes=cap)
    url = parse_repo_url(git_server.url("heavy"))
    with sampled_size(trees.source.mirrors) as peak, pytest.raises(GitError) as refused:
        trees.source.fetch(url, "main")
    assert refused.value.message == f"{git_server.url('heavy')} is larger than {cap} bytes"
    assert refused.value.details["limit"] == "max_repository_bytes"
    # Killed within a poll or two of passing the cap (a late poll on a loaded machine lets git write
    # several MiB more: 11 MiB past it once at load 17): nowhere near the 48 MiB the commit weighs.
    assert peak[0] <= cap + 16 * MiB, peak[0]
    assert not trees.source.mirror_path(url).exists()
    # A repository within the cap still fetches after the refusal.
    light = git_server.repo("light")
    light.commit({"index.html": "fits"})
    assert trees.source.fetch(parse_repo_url(git_server.url("light")), "main")


def test_an_oversized_repository_fails_its_deploy_with_the_reason(
    git_server: GitHttpServer, gitops_stack: GitopsFactory
) -> None:
    repo = git_server.repo("heavy")
    head = plant_random_files(repo.bare, files=8, size=1 * MiB)
    cap = 2 * MiB
    stack = gitops_stack(
        f"sites:\n  - slot: heavy\n    repo: {git_server.url('heavy')}\n    branch: main\n",
        max_repository_bytes=cap,
    )
    queued = stack.client.get("/api/deployments", headers=AUTH).json()["deployments"]
    row = wait_for_deployment(stack, queued[0]["id"])
    assert (row["status"], row["error"]) == ("failed", f"{git_server.url('heavy')} is larger than {cap} bytes")
    # The refused head is recorded, so polling leaves that commit alone.
    assert row["commit_sha"] == head


# -- the service as a real process ----------------------------------------------------------------
RSS_BOUND = 400 * MiB  # the service idles near 100 MiB; the bomb took it to 23 GB before
RSS_KILL = 1024 * MiB  # a regression ends the service here, never the test machine


def memory_of(pid: int, field: str) -> int:
    """VmRSS or VmHWM (the peak) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@contextmanager
def memory_guard(service: ServiceProcess) -> Iterator[list[int]]:
    """Kill the service if it ever passes RSS_KILL (the test then fails); yields [peak seen]."""
    seen = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                seen[0] = max(seen[0], memory_of(service.pid, "VmRSS"))
            except (OSError, AssertionError):
                return
            if seen[0] > RSS_KILL:
                os.kill(service.pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def deployments_of(settings: Settings, slot: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{settings.port}/api/deployments", headers=AUTH, timeout=30)
    assert answer.status_code == 200, f"the API answered {answer.status_code}: the service died (out of memory?)"
    return [row for row in answer.json()["deployments"] if row["slot"] == slot]


def settled(settings: Settings, slot: str, count: int) -> list[dict[str, Any]]:
    """The slot's deployments once there are `count` of them and none is queued or building."""
    rows: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal rows
        rows = deployments_of(settings, slot)
        return len(rows) >= count and all(r["status"] not in ("queued", "building") for r in rows)

    assert wait_until(done, limit=120), rows
    return rows


@pytest.mark.slow
def test_a_git_bomb_fails_its_deploy_and_the_service_stays_small_and_healthy(
    settings: Settings, git_server: GitHttpServer, tmp_path: Path
) -> None:
    served = git_server.repo("bomb")
    served.commit({"index.html": "before the bomb"})
    config = tmp_path / "deploy.yaml"
    config.write_text(
        f"poll_interval: 1\nsites:\n  - slot: bomb\n    repo: {git_server.url('bomb')}\n    branch: main\n"
        + HANDBOOK.removeprefix("sites:\n")
    )
    chosen = replace(settings, config=str(config))
    _, nginx = start_nginx(chosen)
    service = ServiceProcess(chosen, tmp_path / "service.log")
    try:
        service.start()
        with memory_guard(service) as seen:
            assert settled(chosen, "bomb", 1)[0]["status"] == "live"
            bomb = plant_bomb(served.bare, levels=10)  # 10^10 paths, found by polling
            latest, first = settled(chosen, "bomb", 2)
            assert (latest["status"], latest["error"], latest["commit_sha"]) == (
                "failed",
                "the tree has more than 20000 entries",
                bomb,
            )

            # Pushed to a hosted repository: refused before the branch moves.
            work = tmp_path / "work"
            git("init", "--quiet", "-b", "main", str(work))
            plant_bomb(work / ".git", levels=10)
            push_url = f"http://pusher:{TOKEN}@127.0.0.1:{chosen.port}/git/handbook.git"
            code, output = push(work, push_url, "main")
            assert code != 0, output
            assert "remote: DropHost: the push of main was refused: the tree has more than 20000 entries" in output
            assert git("ls-remote", "--heads", push_url) == ""
            assert deployments_of(chosen, "handbook") == []

            # The service still answers and still deploys.
            health = httpx.get(f"http://127.0.0.1:{chosen.port}/health", timeout=10)
            assert health.status_code == 200
            good = work_repo(tmp_path, {"index.html": "<h1>handbook</h1>"})
            code, output = push(good, push_url, "main")
            assert code == 0 and "remote: live at" in output, output
            sites = chosen.site_base_url
            assert httpx.get(f"{sites}/d/handbook/", timeout=10).text == "<h1>handbook</h1>"
            assert httpx.get(f"{sites}/d/bomb/", timeout=10).text == "before the bomb"
            peak = memory_of(service.pid, "VmHWM")
        assert peak < RSS_BOUND, f"peak RSS {peak / MiB:.0f} MiB (sampled {seen[0] / MiB:.0f} MiB)"

        # A refused deploy is a normal failure: after a restart it is not queued again.
        service.stop()
        service.start()
        time.sleep(3)  # three poll intervals
        assert [(r["id"], r["status"]) for r in settled(chosen, "bomb", 2)] == [
            (latest["id"], "failed"),
            (first["id"], "live"),
        ]
        assert httpx.get(f"{sites}/d/bomb/", timeout=10).text == "before the bomb"
    finally:
        service.stop()
        stop_process(nginx)

"""GitSource and Trees on their own: fetch, tree listing and the blob cache, with real git over smart HTTP."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from drophost.errors import GitError
from drophost.gitops.mirror import GitSource, fetched_commit
from drophost.gitops.repourls import parse_repo_url
from drophost.gitops.tree import TreeListing, Trees
from drophost.pipeline.archive import ArchiveLimits
from drophost.settings import Settings
from tests.harness.git import GitHttpServer, Repo, git


def source_for(tmp_path: Path) -> GitSource:
    data = tmp_path / "data"
    data.mkdir()
    return GitSource(Settings(data_dir=data))


def trees_for(tmp_path: Path) -> Trees:
    return Trees(source_for(tmp_path))


def fetch_listing(trees: Trees, server: GitHttpServer, *, path: str = "") -> tuple[str, Path, TreeListing]:
    repo = parse_repo_url(server.url("site"))
    commit = trees.source.fetch(repo, "main")
    git_dir = trees.source.mirror_path(repo)
    return commit, git_dir, trees.list_tree(git_dir, commit, path, ArchiveLimits())


def cached_blobs(trees: Trees) -> set[str]:
    return {p.name for p in trees.blobs.iterdir()}


def test_fetch_returns_the_commit_the_branch_points_at_after_each_push(
    git_server: GitHttpServer, tmp_path: Path
) -> None:
    repo: Repo = git_server.repo("site")
    source = source_for(tmp_path)
    url = parse_repo_url(git_server.url("site"))
    for text in ("one", "two"):
        pushed = repo.commit({"index.html": text})
        assert source.fetch(url, "main") == pushed
        assert git("rev-parse", "refs/heads/main", env={"GIT_DIR": str(source.mirror_path(url))}) == pushed
    assert source.fetch(url, "main") == pushed  # nothing new to fetch: still the head
    with pytest.raises(GitError, match='branch "gone" does not exist'):
        source.fetch(url, "gone")


def test_a_second_tree_reads_only_the_blobs_the_cache_lacks(git_server: GitHttpServer, tmp_path: Path) -> None:
    repo = git_server.repo("site")
    repo.commit({"index.html": "one", "a/same.css": "body{}", "b/copy.css": "body{}", "a/b/c/deep.txt": "deep"})
    trees = trees_for(tmp_path)
    _, git_dir, listing = fetch_listing(trees, git_server)
    first = tmp_path / "first"
    assert trees.write_tree(git_dir, listing, first) == 0
    assert len(cached_blobs(trees)) == 3  # the two identical files share one blob
    assert (first / "a" / "same.css").stat().st_ino == (first / "b" / "copy.css").stat().st_ino

    repo.commit({"index.html": "two"})
    before = cached_blobs(trees)
    _, git_dir, listing = fetch_listing(trees, git_server)
    second = tmp_path / "second"
    assert trees.write_tree(git_dir, listing, second) == 0
    assert len(cached_blobs(trees) - before) == 1
    assert (second / "index.html").read_text() == "two" and (first / "index.html").read_text() == "one"
    assert (second / "a" / "b" / "c" / "deep.txt").stat().st_ino == (first / "a" / "b" / "c" / "deep.txt").stat().st_ino
    assert not any(p.is_symlink() for p in second.rglob("*"))


def test_a_path_is_listed_directly_and_a_bad_path_still_says_why(git_server: GitHttpServer, tmp_path: Path) -> None:
    git_server.repo("site").commit({"public/index.html": "site", "public/css/a.css": "a", "README.md": "readme"})
    trees = trees_for(tmp_path)
    _, _, listing = fetch_listing(trees, git_server, path="public")
    assert sorted(entry.path for entry in listing.files) == ["css/a.css", "index.html"]
    with pytest.raises(GitError, match='path "missing" does not exist in the commit'):
        fetch_listing(trees, git_server, path="missing")
    with pytest.raises(GitError, match='path "README.md" is not a folder in the commit'):
        fetch_listing(trees, git_server, path="README.md")


def test_a_release_on_another_filesystem_gets_copies_and_says_so(git_server: GitHttpServer, tmp_path: Path) -> None:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    git_server.repo("site").commit({"index.html": "one", "css/a.css": "a"})
    trees = trees_for(tmp_path)
    _, git_dir, listing = fetch_listing(trees, git_server)
    with tempfile.TemporaryDirectory(dir=elsewhere) as scratch:
        release = Path(scratch) / "release"
        assert trees.write_tree(git_dir, listing, release) == 2
        assert (release / "index.html").read_text() == "one" and (release / "css" / "a.css").read_text() == "a"
        assert os.stat(release / "index.html").st_nlink == 1


def test_fetched_commit_reads_only_a_full_commit_id(tmp_path: Path) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    head = tmp_path / "FETCH_HEAD"
    assert fetched_commit(head) is None
    head.write_text(f"{sha}\t\tbranch 'main' of http://127.0.0.1/site\n")
    assert fetched_commit(head) == sha
    for text in ("", "not a sha\t\tx\n", f"{sha[:-1]}\t\tx\n", f"-{sha}\t\tx\n"):
        head.write_text(text)
        assert fetched_commit(head) is None


def test_small_packs_left_by_fetches_are_folded_and_the_tree_still_reads(
    git_server: GitHttpServer, tmp_path: Path
) -> None:
    repo = git_server.repo("site")
    trees = trees_for(tmp_path)
    source = trees.source
    url = parse_repo_url(git_server.url("site"))
    for number in range(4):
        repo.commit({"index.html": f"v{number}", f"page-{number}.html": "p"})
        source.fetch(url, "main")
    packs = source.mirror_path(url) / "objects" / "pack"
    before = len(list(packs.glob("*.pack")))
    assert before >= 4  # one kept pack per fetch
    assert not source.fold_packs(url, limit=before)
    assert source.fold_packs(url, limit=2)
    assert len(list(packs.glob("*.pack"))) < before
    _, git_dir, listing = fetch_listing(trees, git_server)
    release = tmp_path / "release"
    trees.write_tree(git_dir, listing, release)
    assert (release / "index.html").read_text() == "v3" and (release / "page-0.html").read_text() == "p"


def test_the_heads_of_our_own_repositories_read_as_git_reads_them(tmp_path: Path) -> None:
    source = source_for(tmp_path)
    bare = source.hosted_path("site")
    source.ensure_bare(bare)
    work = tmp_path / "work"
    work.mkdir()
    git("init", "--quiet", cwd=work)
    git("commit", "--quiet", "--allow-empty", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", "HEAD:refs/heads/feature/a", cwd=work)
    git("pack-refs", "--all", env={"GIT_DIR": str(bare)})  # feature/a packed from here on
    git("commit", "--quiet", "--allow-empty", "-m", "two", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", cwd=work)
    (bare / "refs" / "heads" / "half.lock").write_text(second + "\n")  # an update in flight is no branch
    listed = git("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads/", env={"GIT_DIR": str(bare)})
    assert source.local_heads(bare) == dict(line.split(" ") for line in listed.splitlines())
    assert source.local_heads(bare) == {"feature/a": first, "main": second}
    assert source.local_head(bare, "main") == second and source.local_head(bare, "feature/a") == first
    assert source.local_head(bare, "feature") is None and source.local_head(bare, "gone") is None
    assert source.local_head(tmp_path / "nothing.git", "main") is None

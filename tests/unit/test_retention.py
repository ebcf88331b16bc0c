from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drophost.errors import ValidationError
from drophost.pipeline import releases
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.retention import Prune, Removals, plan_retention


def _row(slot: str, version: int, status: str = "inactive", pinned: bool = False) -> dict[str, object]:
    return {"slot": slot, "version": version, "status": status, "pinned": pinned, "release_dir": f"/r/{slot}/{version}"}


def test_retention_keeps_the_newest_versions_and_the_active_and_pinned_ones() -> None:
    rows = [
        _row("a", 6),
        _row("a", 5),
        _row("a", 4),
        _row("a", 3, pinned=True),
        _row("a", 2, status="active"),
        _row("a", 1),
        _row("b", 2),
        _row("b", 1),
    ]
    assert plan_retention(rows, keep=2) == [Prune("a", 4, "/r/a/4"), Prune("a", 1, "/r/a/1")]


def test_retention_with_nothing_beyond_the_limit_prunes_nothing() -> None:
    assert plan_retention([_row("a", 2), _row("a", 1, status="active")], keep=5) == []


def test_the_store_keeps_one_copy_per_content(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    first = store.add_stream([b"hello ", b"world"])
    second = store.add_stream([b"hello world"])
    assert first == second == hashlib.sha256(b"hello world").hexdigest()
    assert [p for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()] == [store.path(first)]  # one blob
    os.mkdir(tmp_path / "release")
    store.link_into(first, tmp_path / "release" / "a.txt")
    assert (tmp_path / "release" / "a.txt").stat().st_ino == store.path(first).stat().st_ino
    assert store.unreferenced() == []


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused_and_not_kept(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    with pytest.raises(ValidationError):
        store.add_stream([b"evil"], expected=hashlib.sha256(b"good").hexdigest())
    assert not store.has(hashlib.sha256(b"evil").hexdigest())
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_absorbing_a_tree_replaces_known_files_by_links(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    known = store.add_stream([b"same"])
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "same.txt").write_bytes(b"same")
    (tree / "new.txt").write_bytes(b"new")
    added = store.absorb_tree(tree)
    assert added == 3
    assert (tree / "sub" / "same.txt").stat().st_ino == store.path(known).stat().st_ino
    assert store.has(hashlib.sha256(b"new").hexdigest())


def test_unreferenced_blobs_are_found_and_a_dry_run_can_count_doomed_releases(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    kept = store.add_stream([b"kept"])
    doomed = store.add_stream([b"doomed"])
    orphan = store.add_stream([b"orphan"])
    for name, digest in (("keep", kept), ("doom", doomed)):
        (tmp_path / name).mkdir()
        store.link_into(digest, tmp_path / name / "f")
    assert store.unreferenced() == [store.path(orphan)]
    assert sorted(store.unreferenced(ignoring={tmp_path / "doom"})) == sorted([store.path(orphan), store.path(doomed)])


def test_cached_git_blobs_no_release_links_to_are_unreferenced(tmp_path: Path) -> None:
    from drophost.pipeline.retention import unreferenced_git_blobs

    cache = tmp_path / "git" / "blobs"
    cache.mkdir(parents=True)
    for oid in ("a" * 40, "b" * 40, "c" * 40):
        (cache / oid).write_bytes(oid.encode())
    (cache / ("d" * 40 + ".partial")).write_bytes(b"being written")
    release = tmp_path / "release"
    release.mkdir()
    os.link(cache / ("a" * 40), release / "kept.txt")
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    os.link(cache / ("b" * 40), doomed / "old.txt")
    assert sorted(p.name for p in unreferenced_git_blobs(cache, ignoring=set())) == ["c" * 40]
    assert sorted(p.name for p in unreferenced_git_blobs(cache, ignoring={doomed})) == ["b" * 40, "c" * 40]


def test_releases_of_a_moved_data_directory_are_not_orphans(tmp_path: Path) -> None:
    from drophost.pipeline.releases import orphaned

    root = tmp_path / "new-place" / "releases"
    for name in ("docs/1", "docs/2", "blog/7"):
        (root / name).mkdir(parents=True)
    (root / ".incoming" / "abc").mkdir(parents=True)
    kept = {"/old-place/releases/docs/1", "/old-place/releases/blog/7"}
    assert orphaned(root, kept) == [root / ".incoming" / "abc", root / "docs" / "2"]


def _release(root: Path, slot: str, name: str) -> Path:
    path = root / slot / name
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "index.html").write_text(name)
    releases.seal(path)
    return path


def test_a_slots_leftovers_are_its_releases_no_kept_version_names(tmp_path: Path) -> None:
    root = tmp_path / "releases"
    kept = [_release(root, "a", "7"), _release(root, "a", "9")]
    stale = _release(root, "a", "3")
    aside = releases.set_aside(_release(root, "a", "5"))
    _release(root, "b", "1")
    assert aside == root / "a" / "5.removing"
    # Kept ones are matched by slot and id, also when stored under another data directory.
    stored = {str(kept[0]), "/moved/releases/a/9"}
    assert releases.leftovers(root, "a", stored) == [stale, aside]
    assert releases.leftovers(root, "nothing", stored) == []
    assert releases.leftovers(root, releases.INCOMING, stored) == []


def test_removals_wait_for_the_slots_lock_and_run_one_worker_per_slot(tmp_path: Path) -> None:
    locks: dict[str, threading.Lock] = {}

    @contextmanager
    def slot_lock(slot: str) -> Iterator[None]:
        with locks.setdefault(slot, threading.Lock()):
            yield

    removals = Removals(slot_lock)
    first, second = _release(tmp_path, "a", "1"), _release(tmp_path, "a", "2")
    other = _release(tmp_path, "b", "1")
    with slot_lock("a"):
        removals.remove_later("a", [first])
        removals.remove_later("a", [second, tmp_path / "a" / "gone already"])
        removals.remove_later("b", [other])
        removals.remove_later("c", [])
        removals.wait(30, slot="b")  # a's worker waits for the lock a deploy of slot a holds
        assert not other.exists() and first.exists() and second.exists()
    removals.wait(30)
    assert not first.exists() and not second.exists()
    removals.remove_later("a", [_release(tmp_path, "a", "3")])  # a new worker once the last one ended
    removals.wait(30)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == []


def test_a_worker_that_could_not_start_does_not_hold_up_the_slots_later_removals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def slot_lock(slot: str) -> Iterator[None]:
        yield

    removals = Removals(slot_lock)
    first = _release(tmp_path, "a", "1")
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        removals.remove_later("a", [first])
    monkeypatch.setattr(threading.Thread, "start", real_start)
    second = _release(tmp_path, "a", "2")
    removals.remove_later("a", [second])  # starts a worker: the failed one was never registered
    removals.wait(30)
    assert not first.exists() and not second.exists()

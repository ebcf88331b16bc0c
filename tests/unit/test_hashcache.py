"""The CLI's remembered digests: unchanged files are not read again, changed ones always are."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from drophost.client import hashcache
from drophost.client.digest import scan_folder
from drophost.digests import file_digest


class CountingDigest:
    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, path: Path) -> str:
        self.read.append(path.name)
        return file_digest(path)


def site(tmp_path: Path, count: int = 5) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    for n in range(count):
        (folder / f"page{n}.html").write_text(f"page {n}\n")
    return folder


def settle() -> None:
    """Let the file system's clock move past the files just written (a coarse clock ticks every few ms)."""
    time.sleep(0.05)


def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    folder = site(tmp_path)
    settle()
    cache = tmp_path / "cache" / "one.json"
    first = CountingDigest()
    digests = hashcache.hash_with_cache(scan_folder(folder), cache, first)
    assert len(first.read) == 5
    assert digests["page1.html"] == hashlib.sha256(b"page 1\n").hexdigest()

    again = CountingDigest()
    assert hashcache.hash_with_cache(scan_folder(folder), cache, again) == digests
    assert again.read == []


def test_an_edit_that_keeps_size_and_modification_time_is_seen(tmp_path: Path) -> None:
    folder = site(tmp_path)
    settle()
    cache = tmp_path / "cache.json"
    hashcache.hash_with_cache(scan_folder(folder), cache, file_digest)
    page = folder / "page2.html"
    before = page.stat()
    time.sleep(0.01)
    page.write_text("PAGE 2\n")  # same size
    os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old modification time back
    counting = CountingDigest()
    digests = hashcache.hash_with_cache(scan_folder(folder), cache, counting)
    assert counting.read == ["page2.html"]
    assert digests["page2.html"] == hashlib.sha256(b"PAGE 2\n").hexdigest()


def test_racily_clean_entries_are_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = site(tmp_path, count=2)
    settle()
    cache = tmp_path / "cache.json"
    # As if the marker were written in the same clock tick as the files: they could change unseen.
    oldest = min(path.stat().st_ctime_ns for path in folder.iterdir())
    monkeypatch.setattr(hashcache, "start", lambda path: oldest)
    hashcache.hash_with_cache(scan_folder(folder), cache, file_digest)
    assert json.loads(cache.read_text())["files"] == {}
    monkeypatch.undo()
    counting = CountingDigest()
    hashcache.hash_with_cache(scan_folder(folder), cache, counting)
    assert sorted(counting.read) == ["page0.html", "page1.html"]


def test_a_corrupt_or_foreign_cache_means_hashing_everything(tmp_path: Path) -> None:
    folder = site(tmp_path, count=3)
    settle()
    cache = tmp_path / "cache.json"
    for text in ("not json", '{"version": 99, "files": {}}', '{"version": 1, "files": {"page0.html": [1, 2]}}'):
        cache.write_text(text)
        counting = CountingDigest()
        digests = hashcache.hash_with_cache(scan_folder(folder), cache, counting)
        assert len(counting.read) == 3
        assert digests["page0.html"] == hashlib.sha256(b"page 0\n").hexdigest()
        cache.write_text(text)


def test_an_unwritable_cache_is_no_error(tmp_path: Path) -> None:
    folder = site(tmp_path, count=2)
    settle()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would be")
    digests = hashcache.hash_with_cache(scan_folder(folder), blocker / "sub" / "cache.json", file_digest)
    assert len(digests) == 2


def test_one_cache_file_per_folder(tmp_path: Path) -> None:
    root = hashcache.cache_root({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert root == tmp_path / "xdg" / "drophost" / "digests"
    assert hashcache.cache_root({"HOME": "/home/ann"}) == Path("/home/ann/.cache/drophost/digests")
    one, other = hashcache.cache_file(root, tmp_path / "a"), hashcache.cache_file(root, tmp_path / "b")
    assert one != other and one.parent == root
    assert hashcache.cache_file(root, tmp_path / "a" / ".." / "a") == one


def test_only_new_content_counts_as_new_though_a_touched_file_is_read_again(tmp_path: Path) -> None:
    folder = site(tmp_path)
    settle()
    cache = tmp_path / "cache" / "one.json"
    _, fresh = hashcache.hash_folder(scan_folder(folder), cache, CountingDigest())
    assert len(fresh) == 5
    os.utime(folder / "page1.html", (1, 1))  # touched: read again, same bytes
    (folder / "page2.html").write_text("page 2, edited\n")
    settle()
    again = CountingDigest()
    _, fresh = hashcache.hash_folder(scan_folder(folder), cache, again)
    assert sorted(again.read) == ["page1.html", "page2.html"]
    assert fresh == {"page2.html"}

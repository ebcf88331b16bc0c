from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from drophost.errors import BuildError
from drophost.pipeline.archive import ArchiveLimits
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.buildoutput import adopt_output, copy_output, same_files


def output(tmp_path: Path) -> Path:
    out = tmp_path / "public"
    (out / "docs").mkdir(parents=True)
    (out / "index.html").write_text("home")
    (out / "docs" / "a.html").write_text("a")
    (out / ".hidden").write_text("never published")
    os.chmod(out / "index.html", 0o600)
    return out


@pytest.mark.parametrize("move", [False, True])
def test_the_output_is_published_by_the_zip_rules_copied_or_moved(tmp_path: Path, move: bool) -> None:
    out = output(tmp_path)
    copied = copy_output(out, tmp_path / "incoming", ArchiveLimits(), move=move)
    assert (copied.files, copied.size) == (2, 5)
    release = tmp_path / "incoming"
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*")) == ["docs", "docs/a.html", "index.html"]
    assert (release / "index.html").stat().st_mode & 0o777 == 0o644
    assert (out / "index.html").exists() is not move


def test_a_file_with_another_name_is_copied_even_when_moving(tmp_path: Path) -> None:
    out = output(tmp_path)
    os.link(out / "docs" / "a.html", tmp_path / "cache-file")
    copy_output(out, tmp_path / "incoming", ArchiveLimits(), move=True)
    (tmp_path / "cache-file").write_text("changed by the next build")
    assert (tmp_path / "incoming" / "docs" / "a.html").read_text() == "a"


def test_a_link_in_the_output_is_refused(tmp_path: Path) -> None:
    out = output(tmp_path)
    (out / "leak.html").symlink_to("/etc/passwd")
    with pytest.raises(BuildError, match="has a link"):
        copy_output(out, tmp_path / "incoming", ArchiveLimits(), move=True)


def test_an_adopted_output_is_renamed_and_published_by_the_zip_rules(tmp_path: Path) -> None:
    out = output(tmp_path)
    (out / ".git").mkdir()
    (out / ".git" / "config").write_text("never published")
    os.chmod(out / "docs", 0o700)
    copied = adopt_output(out, tmp_path / "incoming", ArchiveLimits())
    assert (copied.files, copied.size) == (2, 5)
    release = tmp_path / "incoming"
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*")) == ["docs", "docs/a.html", "index.html"]
    assert (release / "index.html").stat().st_mode & 0o777 == 0o644
    assert (release / "docs").stat().st_mode & 0o777 == 0o755
    assert not out.exists()


def test_an_adopted_file_with_another_name_is_copied(tmp_path: Path) -> None:
    out = output(tmp_path)
    os.link(out / "docs" / "a.html", tmp_path / "cache-file")
    adopt_output(out, tmp_path / "incoming", ArchiveLimits())
    (tmp_path / "cache-file").write_text("changed by the next build")
    assert (tmp_path / "incoming" / "docs" / "a.html").read_text() == "a"
    assert sorted(p.name for p in (tmp_path / "incoming" / "docs").iterdir()) == ["a.html"]


@pytest.mark.parametrize("bad", ["link", "fifo"])
def test_an_adopted_output_with_a_link_or_special_file_is_refused(tmp_path: Path, bad: str) -> None:
    out = output(tmp_path)
    if bad == "link":
        (out / "leak.html").symlink_to("/etc/passwd")
    else:
        os.mkfifo(out / "pipe.html")
    with pytest.raises(BuildError, match="has a link" if bad == "link" else "special file"):
        adopt_output(out, tmp_path / "incoming", ArchiveLimits())


def test_an_adopted_output_never_replaces_an_existing_folder(tmp_path: Path) -> None:
    out = output(tmp_path)
    (tmp_path / "incoming").mkdir()
    with pytest.raises(FileExistsError):
        adopt_output(out, tmp_path / "incoming", ArchiveLimits())


def test_same_files_compares_names_and_contents_linked_or_not(tmp_path: Path) -> None:
    live, built = tmp_path / "live", tmp_path / "built"
    (live / "docs").mkdir(parents=True)
    (built / "docs").mkdir(parents=True)
    (live / "index.html").write_text("home")
    os.link(live / "index.html", built / "index.html")  # one blob of the store
    (live / "docs" / "a.html").write_text("a")
    (built / "docs" / "a.html").write_text("a")  # the same content, not linked
    assert same_files(live, built)
    (built / "docs" / "a.html").write_text("b")
    assert not same_files(live, built)
    (built / "docs" / "a.html").write_text("a")
    (built / "docs" / "b.html").write_text("b")
    assert not same_files(live, built)


def stored(tmp_path: Path) -> ArtifactStore:
    store = ArtifactStore(tmp_path / "artifacts")
    store.prepare()
    return store


def test_an_adopted_output_goes_into_the_store_read_only_as_it_is_taken(tmp_path: Path) -> None:
    store = stored(tmp_path)
    known = tmp_path / "known"
    known.write_text("a")  # what docs/a.html holds: the store has that blob already
    os.chmod(known, 0o444)
    store.adopt_file(str(known), hashlib.sha256(b"a").hexdigest())
    out = output(tmp_path)
    os.link(out / "index.html", tmp_path / "cache-file")  # a name the build keeps: published as a copy
    copied = adopt_output(out, tmp_path / "incoming", ArchiveLimits(), store)
    assert (copied.files, copied.size) == (2, 5)
    release = tmp_path / "incoming"
    for name, content in (("index.html", b"home"), ("docs/a.html", b"a")):
        info = (release / name).stat()
        blob = store.path(hashlib.sha256(content).hexdigest())
        assert (info.st_ino, info.st_mode & 0o777) == (blob.stat().st_ino, 0o444)
    assert known.stat().st_ino == (release / "docs" / "a.html").stat().st_ino
    (tmp_path / "cache-file").chmod(0o644)
    (tmp_path / "cache-file").write_text("changed by the next build")
    assert (release / "index.html").read_text() == "home"
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*")) == ["docs", "docs/a.html", "index.html"]


@pytest.mark.parametrize("move", [False, True])
def test_a_copied_or_moved_output_goes_into_the_store_too(tmp_path: Path, move: bool) -> None:
    store = stored(tmp_path)
    copy_output(output(tmp_path), tmp_path / "incoming", ArchiveLimits(), move=move, store=store)
    info = (tmp_path / "incoming" / "index.html").stat()
    assert (info.st_nlink, info.st_mode & 0o777) == (2, 0o444)
    assert store.path(hashlib.sha256(b"home").hexdigest()).stat().st_ino == info.st_ino


def test_an_adopted_output_drops_dot_names_at_any_depth_and_hashes_large_files_whole(tmp_path: Path) -> None:
    store = stored(tmp_path)
    out = output(tmp_path)
    (out / "docs" / ".cache").mkdir()
    (out / "docs" / ".cache" / "x.html").write_text("never published")
    (out / "docs" / "deep" / "er").mkdir(parents=True)
    (out / "docs" / "deep" / "er" / ".env").write_text("never published")
    large = os.urandom(3 * 1024 * 1024 + 7)  # read in chunks, not in one pread
    (out / "docs" / "deep" / "er" / "big.bin").write_bytes(large)
    (out / "empty.txt").write_bytes(b"")
    adopt_output(out, tmp_path / "incoming", ArchiveLimits(), store)
    release = tmp_path / "incoming"
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_file()) == [
        "docs/a.html",
        "docs/deep/er/big.bin",
        "empty.txt",
        "index.html",
    ]
    for name, content in (("docs/deep/er/big.bin", large), ("empty.txt", b""), ("index.html", b"home")):
        blob = store.path(hashlib.sha256(content).hexdigest())
        assert blob.stat().st_ino == (release / name).stat().st_ino
        assert blob.read_bytes() == content


def test_the_store_makes_its_blob_folders_when_prepared_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    assert sorted(p.name for p in store.blobs.iterdir()) == [f"{n:02x}" for n in range(256)]
    store.prepare()
    (store.blobs / "7f").rmdir()  # removed by hand: its first blob makes it again
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00" * 9)
    digest = "7f" + hashlib.sha256(b"x").hexdigest()[2:]
    assert store.adopt_file(str(blob), digest)
    assert store.path(digest).stat().st_ino == blob.stat().st_ino

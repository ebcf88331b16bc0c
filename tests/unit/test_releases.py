"""Sealing a release on a real filesystem: only plain folders and files go live, read-only."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drophost.errors import UnsafeReleaseError
from drophost.pipeline import releases
from drophost.pipeline.reconcile import safe_to_serve


def make_tree(root: Path) -> Path:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "index.html").write_text("home")
    (root / "docs" / "page.html").write_text("page")
    (root / "docs" / "deep" / "more.css").write_text("css")
    return root


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for path in sorted(root.rglob("*")):
        found[path.relative_to(root).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_a_plain_tree_is_sealed_read_only_top_folder_last(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "r")
    assert not releases.is_sealed(tree)
    releases.seal(tree)
    assert releases.is_sealed(tree)
    assert modes(tree) == {
        ".": 0o555,
        "docs": 0o555,
        "docs/deep": 0o555,
        "docs/deep/more.css": 0o444,
        "docs/page.html": 0o444,
        "index.html": 0o444,
    }
    releases.seal(tree)  # idempotent
    assert (tree / "docs" / "page.html").read_text() == "page"


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda root: (root / "leak.html").symlink_to("/etc/passwd"), id="link-to-a-file"),
        pytest.param(lambda root: (root / "docs" / "up").symlink_to(".."), id="link-to-a-folder"),
        pytest.param(lambda root: (root / "docs" / "dangling").symlink_to("nowhere"), id="dangling-link"),
        pytest.param(lambda root: os.mkfifo(root / "docs" / "deep" / "pipe"), id="fifo"),
        pytest.param(lambda root: (root / "docs" / ".env").write_text("SECRET=1"), id="dotfile"),
        pytest.param(lambda root: (root / ".git").mkdir(), id="dot-folder"),
        pytest.param(lambda root: (root / "docs" / ".well-known").mkdir(), id="well-known-below-the-top"),
        pytest.param(lambda root: (root / ".well-known").write_text("a file"), id="well-known-file"),
        pytest.param(
            lambda root: [(root / ".well-known").mkdir(), (root / ".well-known" / ".env").write_text("x")],
            id="dotfile-in-well-known",
        ),
    ],
)
def test_anything_but_plain_folders_and_files_is_refused_and_nothing_is_sealed(tmp_path: Path, plant) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree(tmp_path / "r")
    plant(tree)
    before = modes(tree)
    with pytest.raises(UnsafeReleaseError) as caught:
        releases.seal(tree)
    assert caught.value.status_code == 422
    assert str(tmp_path) not in caught.value.message
    assert not releases.is_sealed(tree)
    # Folders are sealed only after the whole tree passed; a refused tree keeps its folder modes.
    assert {k: v for k, v in modes(tree).items() if (tree / k).is_dir()} == {
        k: v for k, v in before.items() if (tree / k).is_dir()
    }
    with pytest.raises(UnsafeReleaseError):
        releases.seal_if_needed(tree)


def test_a_link_given_as_the_release_itself_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "r")
    alias = tmp_path / "alias"
    alias.symlink_to(tree)
    with pytest.raises(UnsafeReleaseError):
        releases.seal(alias)
    assert not releases.is_sealed(alias)


def test_a_shared_writable_file_is_made_read_only_where_it_is_linked(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_text("shared")
    blob.chmod(0o644)
    tree = make_tree(tmp_path / "r")
    os.link(blob, tree / "shared.txt")
    releases.seal(tree)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444


def test_remove_deletes_a_sealed_release_and_is_quiet_when_it_is_gone(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "r")
    releases.seal(tree)
    releases.remove(tree)
    assert not tree.exists()
    releases.remove(tree)


def test_remove_of_a_link_removes_the_link_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "r")
    alias = tmp_path / "alias"
    alias.symlink_to(tree)
    releases.remove(alias)
    assert not alias.exists() and not alias.is_symlink()
    assert (tree / "index.html").read_text() == "home"


@contextmanager
def acting_as(uid: int, gid: int) -> Iterator[None]:
    """Effective user and group switched for the block (root's saved ids bring them back)."""
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the tree to an unprivileged owner")
def test_for_its_unprivileged_owner_a_sealed_release_cannot_be_changed_but_can_be_removed() -> None:
    # Root ignores file modes; the service runs as an ordinary user, so that is who is checked.
    owner = pwd.getpwnam("nobody")
    # Not under pytest's tmp_path: its parent is private to root.
    scratch = Path(tempfile.mkdtemp(prefix="dh-seal-", dir="/tmp"))
    try:
        os.chmod(scratch, 0o755)
        tree = make_tree(scratch / "r")
        for path in [scratch, tree, *tree.rglob("*")]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        check_as_owner(tree, owner.pw_uid, owner.pw_gid)
    finally:
        releases.remove(scratch)


def check_as_owner(tree: Path, uid: int, gid: int) -> None:
    with acting_as(uid, gid):
        releases.seal(tree)
        for target in (tree / "new.html", tree / "docs" / "new.html"):
            with pytest.raises(PermissionError):
                target.write_text("x")
        with pytest.raises(PermissionError):
            (tree / "index.html").write_text("changed")
        with pytest.raises(PermissionError):
            (tree / "docs" / "leak.html").symlink_to("/etc/passwd")
        with pytest.raises(PermissionError):
            (tree / "docs" / "page.html").unlink()
        releases.remove(tree)
        assert not tree.exists()


def test_at_start_a_release_that_cannot_be_checked_is_not_served(tmp_path: Path) -> None:
    clean = make_tree(tmp_path / "clean")
    tampered = make_tree(tmp_path / "tampered")
    (tampered / "leak.html").symlink_to("/etc/passwd")
    assert safe_to_serve("clean", clean) and releases.is_sealed(clean)
    assert not safe_to_serve("tampered", tampered)
    assert safe_to_serve("gone", tmp_path / "gone")  # nothing to serve; its link just leads nowhere
    assert not safe_to_serve("unreadable", tmp_path / ("x" * 300))  # lstat fails: ENAMETOOLONG


def test_well_known_at_the_top_is_sealed_like_any_folder(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "r")
    (tree / ".well-known" / "acme").mkdir(parents=True)
    (tree / ".well-known" / "security.txt").write_text("Contact: x")
    releases.seal(tree)
    assert releases.is_sealed(tree) and modes(tree)[".well-known/security.txt"] == 0o444


@pytest.mark.parametrize(
    ("path", "published"),
    [
        ("index.html", True),
        (".well-known/security.txt", True),
        (".well-known/acme/token", True),
        (".well-known", False),
        (".well-known/.env", False),
        ("a/.well-known/x", False),
        (".env", False),
        (".git/config", False),
        ("docs/.DS_Store", False),
    ],
)
def test_only_well_known_at_the_top_escapes_the_dotfile_rule(path: str, published: bool) -> None:
    assert releases.is_published_path(path.split("/")) is published

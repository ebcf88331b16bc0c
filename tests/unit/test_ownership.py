"""Who owns what in the data directory after `drophost up` handed it over (accounts.apply_ownership).

Runs as root (the machine's tests do): lchown to made-up ids needs no users to exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drophost.accounts import OWNERS_FILE, Account, apply_ownership

SERVICE = Account(name="svc", uid=41001, gid=41001)
DB = Account(name="db", uid=41002, gid=41002)
OTHER = Account(name="other", uid=41003, gid=41003)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lchown to other users needs root")


def make_data(root: Path) -> dict[str, Path]:
    paths = {
        "config": root / "nginx" / "nginx.conf",
        "release": root / "releases" / "docs" / "7" / "index.html",
        "blob": root / "store" / "blobs" / "ab" / "cdef",
        "cluster": root / "postgres" / "data" / "PG_VERSION",
        "key": root / "tls" / "key.pem",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (root / "live").mkdir()
    (root / "live" / "docs").symlink_to("../releases/docs/7")
    return paths


def owner(path: Path) -> int:
    return path.lstat().st_uid


def test_the_first_hand_over_walks_everything(tmp_path: Path) -> None:
    paths = make_data(tmp_path)
    apply_ownership(tmp_path, SERVICE, DB)
    assert owner(paths["config"]) == owner(paths["release"]) == owner(paths["blob"]) == SERVICE.uid
    assert owner(tmp_path / "live" / "docs") == SERVICE.uid
    assert owner(paths["cluster"]) == DB.uid
    assert owner(paths["key"]) == 0  # tls/ stays root's
    assert (tmp_path / OWNERS_FILE).read_text() == f"service {SERVICE.uid}:{SERVICE.gid}\ndb {DB.uid}:{DB.gid}\n"


def test_a_later_start_walks_what_up_writes_but_not_deep_in_the_bulk_trees(tmp_path: Path) -> None:
    paths = make_data(tmp_path)
    apply_ownership(tmp_path, SERVICE, DB)
    # What drophost up rewrites as root at every start is handed over again...
    paths["config"].write_text("y")
    os.lchown(paths["config"], 0, 0)
    # ...while a file deep in a release (which only the service writes) is not looked at again.
    os.lchown(paths["release"], OTHER.uid, OTHER.gid)
    apply_ownership(tmp_path, SERVICE, DB)
    assert owner(paths["config"]) == SERVICE.uid
    assert owner(paths["release"]) == OTHER.uid


def test_a_bulk_tree_with_another_owner_on_top_is_walked_again(tmp_path: Path) -> None:
    paths = make_data(tmp_path)
    apply_ownership(tmp_path, SERVICE, DB)
    os.lchown(paths["release"], OTHER.uid, OTHER.gid)
    os.lchown(tmp_path / "releases" / "docs", 0, 0)  # a folder someone made as root
    apply_ownership(tmp_path, SERVICE, DB)
    assert owner(tmp_path / "releases" / "docs") == owner(paths["release"]) == SERVICE.uid


def test_other_accounts_walk_everything_again(tmp_path: Path) -> None:
    paths = make_data(tmp_path)
    apply_ownership(tmp_path, SERVICE, DB)
    os.lchown(paths["release"], 0, 0)
    os.lchown(paths["cluster"], 0, 0)
    apply_ownership(tmp_path, OTHER, DB)
    assert owner(paths["release"]) == OTHER.uid
    assert owner(paths["cluster"]) == DB.uid
    assert f"service {OTHER.uid}" in (tmp_path / OWNERS_FILE).read_text()

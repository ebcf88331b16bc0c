"""Every way in publishes .well-known/ at the top of a site and no other dotfile: git trees, digest
file lists and the client's folder scan (ZIPs and sealing: test_archive, test_releases)."""

from __future__ import annotations

from pathlib import Path

from drophost.client.digest import scan_folder
from drophost.gitops.tree import parse_listing
from drophost.pipeline.archive import ArchiveLimits
from drophost.pipeline.digest import check_file_list

PATHS = ["index.html", ".well-known/security.txt", ".well-known/.hidden", ".env", ".git/config", "a/.well-known/x"]
PUBLISHED = ["index.html", ".well-known/security.txt"]


def test_a_git_tree_publishes_well_known_only_at_the_top() -> None:
    listing = b"".join(f"100644 blob {'a' * 40} 3\t{path}\0".encode() for path in PATHS)
    assert [entry.path for entry in parse_listing(listing, ArchiveLimits()).files] == PUBLISHED


def test_a_digest_file_list_publishes_well_known_only_at_the_top() -> None:
    assert sorted(check_file_list({path: "b" * 64 for path in PATHS}, ArchiveLimits())) == sorted(PUBLISHED)


def test_the_client_sends_well_known_only_from_the_top(tmp_path: Path) -> None:
    for path in PATHS:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert sorted(scan_folder(tmp_path)) == sorted(PUBLISHED)

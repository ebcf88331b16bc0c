from __future__ import annotations

import os
from pathlib import Path

import pytest

from drophost.errors import BuildError
from drophost.pipeline.archive import ArchiveLimits
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

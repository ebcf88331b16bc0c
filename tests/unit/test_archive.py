from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from drophost import runner
from drophost.errors import InvalidArchiveError
from drophost.pipeline.archive import (
    SMALL_FILE,
    ArchiveLimits,
    ExtractionPlan,
    check_entry_name,
    extract,
    open_archive,
    plan_extraction,
)
from drophost.pipeline.artifacts import ArtifactStore
from drophost.settings import Settings
from tests.zipcraft import BAD_ZIPS, LIMITS, BadZip, Entry, MiB, craft_zip, std_zip, streamed_zip, zipinfo_zip

TEST_LIMITS = ArchiveLimits(**LIMITS)


def unpack(data: bytes, destination: Path, limits: ArchiveLimits = TEST_LIMITS) -> ExtractionPlan:
    """What the deployer does with an upload: open, plan, extract (into a store beside the tree)."""
    raw = io.BytesIO(data)
    store = ArtifactStore(destination.parent / f"{destination.name}-store")
    store.prepare()
    with open_archive(raw) as archive:
        plan = plan_extraction(archive, raw, limits)
        extract(archive, plan, destination, store)
    return plan


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_ZIPS, ids=lambda bad: bad.id)
def test_bad_archive_is_refused_with_a_readable_sentence(bad: BadZip, tmp_path: Path) -> None:
    with pytest.raises(InvalidArchiveError) as caught:
        unpack(bad.build(), tmp_path / "out")
    message = caught.value.message
    assert bad.says in message.lower()
    assert message.isprintable() and len(message) < 400
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    "bad_id", ["dot-dot", "absolute", "symlink", "bomb-overlap-same-header", "duplicate", "too-many-entries"]
)
def test_refusals_that_need_no_data_are_made_before_extracting_anything(bad_id: str, tmp_path: Path) -> None:
    bad = next(b for b in BAD_ZIPS if b.id == bad_id)
    raw = io.BytesIO(bad.build())
    with open_archive(raw) as archive, pytest.raises(InvalidArchiveError):
        plan_extraction(archive, raw, TEST_LIMITS)


def test_overlapping_entries_are_not_detected_by_zipfile_itself() -> None:
    # The reason archive.check_no_overlap exists: Python 3.11's zipfile reads both entries happily.
    bad = next(b for b in BAD_ZIPS if b.id == "bomb-overlap-nested")
    with zipfile.ZipFile(io.BytesIO(bad.build())) as archive:
        assert archive.testzip() is None
        outer, inner = (archive.read(name) for name in archive.namelist())
    # b.html's header and data are bytes inside a.html: the same bytes are counted twice.
    assert inner == b"<p>" + b"q" * 2000 + b"</p>"
    assert outer.startswith(b"PK\x03\x04") and b"b.html" in outer


def test_corrupt_data_leaves_only_the_destination_the_caller_removes(tmp_path: Path) -> None:
    bad = next(b for b in BAD_ZIPS if b.id == "corrupt-crc")
    with pytest.raises(InvalidArchiveError):
        unpack(bad.build(), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out-store"]


def test_ratio_cap_follows_the_limit(tmp_path: Path) -> None:
    data = craft_zip(Entry("zeros.bin", bytes(2 * MiB), method=zipfile.ZIP_DEFLATED))
    with pytest.raises(InvalidArchiveError, match="expands more than 200 times"):
        unpack(data, tmp_path / "a", ArchiveLimits())
    plan = unpack(data, tmp_path / "b", ArchiveLimits(max_compression_ratio=100_000))
    assert plan.total_bytes == 2 * MiB


def test_small_files_may_compress_well(tmp_path: Path) -> None:
    # Below 1 MiB in total any ratio is harmless.
    data = craft_zip(Entry("index.html", bytes(MiB), method=zipfile.ZIP_DEFLATED))
    assert unpack(data, tmp_path / "out").total_bytes == MiB


def test_limits_are_inclusive(tmp_path: Path) -> None:
    names = [f"f{i}.html" for i in range(LIMITS["max_entries"])]
    names[0] = "n" * 250 + ".html"  # 255 bytes
    names[1] = "/".join(["d"] * 31) + "/deep.html"  # 32 components
    plan = unpack(craft_zip(*(Entry(n, b"x") for n in names)), tmp_path / "out")
    assert len(plan.files) == LIMITS["max_entries"]
    long_path = "/".join(["p" * 254] * 4) + "/" + "q" * 4  # 1024 bytes
    assert len(long_path) == 1024
    assert check_entry_name(long_path, ArchiveLimits())[-1] == "qqqq"


def test_multibyte_names_are_measured_in_bytes() -> None:
    with pytest.raises(InvalidArchiveError, match="longer than 255 bytes"):
        check_entry_name("\u00e9" * 128, ArchiveLimits())
    assert check_entry_name("\u00e9" * 127, ArchiveLimits()) == ["\u00e9" * 127]


@pytest.mark.parametrize("name", ["a\x01b", "a\x7f", "tab\there", "\u200eltr", "x\u2028y", "nel\x85"])
def test_control_and_format_characters_are_refused_ascii_or_not(name: str) -> None:
    with pytest.raises(InvalidArchiveError, match="contains control characters"):
        check_entry_name(name, ArchiveLimits())


@pytest.mark.parametrize("name", ["site/index.html", "caf\u00e9/men\u00fc.html", "a b/~c+d@e,f.txt"])
def test_printable_names_pass_the_control_character_check(name: str) -> None:
    assert check_entry_name(name, ArchiveLimits()) == name.split("/")


def test_a_symlink_mode_from_another_system_is_just_a_file(tmp_path: Path) -> None:
    # Only Unix archives (create_system 3) carry Unix modes; elsewhere the bits mean nothing.
    info = zipfile.ZipInfo("link.html")
    info.create_system = 0
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    unpack(zipinfo_zip(info, b"/etc/passwd"), tmp_path / "out")
    assert not (tmp_path / "out" / "link.html").is_symlink()
    assert (tmp_path / "out" / "link.html").read_bytes() == b"/etc/passwd"


# -- good input --------------------------------------------------------------------------------
def test_files_are_written_byte_for_byte(tmp_path: Path) -> None:
    files = {"index.html": b"<h1>hi</h1>", "img/logo.png": os.urandom(5000), "css/a/b/site.css": b"body{}"}
    plan = unpack(std_zip(files), tmp_path / "out")
    assert tree(tmp_path / "out") == files
    assert plan.total_bytes == sum(len(v) for v in files.values())
    assert stat.S_IMODE((tmp_path / "out" / "img").stat().st_mode) & 0o555 == 0o555
    assert stat.S_IMODE((tmp_path / "out" / "index.html").stat().st_mode) & 0o444 == 0o444


def test_a_single_top_level_folder_is_stripped(tmp_path: Path) -> None:
    plan = unpack(std_zip({"site/": b"", "site/index.html": b"a", "site/css/x.css": b"b"}), tmp_path / "out")
    assert plan.stripped_prefix == "site"
    assert tree(tmp_path / "out") == {"index.html": b"a", "css/x.css": b"b"}


@pytest.mark.parametrize(
    "files",
    [
        {"one/index.html": b"a", "two/index.html": b"b"},
        {"index.html": b"a", "site/page.html": b"b"},
    ],
    ids=["two-folders", "file-beside-folder"],
)
def test_nothing_is_stripped_unless_every_file_shares_one_folder(files: dict[str, bytes], tmp_path: Path) -> None:
    plan = unpack(std_zip(files), tmp_path / "out")
    assert plan.stripped_prefix == ""
    assert tree(tmp_path / "out") == files


def test_macosx_folders_and_dotfiles_are_not_published(tmp_path: Path) -> None:
    files = {
        "site/index.html": b"a",
        "site/.env": b"SECRET=1",
        "site/.git/config": b"[core]",
        "site/assets/.DS_Store": b"junk",
        "__MACOSX/site/._index.html": b"fork",
        ".DS_Store": b"junk",
    }
    plan = unpack(std_zip(files), tmp_path / "out")
    assert tree(tmp_path / "out") == {"index.html": b"a"}
    assert [f.target for f in plan.files] == ["index.html"]


@pytest.mark.parametrize("folder", ["", "site/"])
def test_well_known_at_the_top_of_the_site_is_published(tmp_path: Path, folder: str) -> None:
    files = {
        "index.html": b"home",
        ".well-known/security.txt": b"Contact: x",
        ".well-known/apple-app-site-association": b"{}",
        ".well-known/acme/token": b"t",
        ".well-known/.hidden": b"no",
        "docs/.well-known/x": b"no",
        ".env": b"SECRET=1",
    }
    plan = unpack(std_zip({folder + name: data for name, data in files.items()}), tmp_path / "out")
    published = [".well-known/security.txt", ".well-known/apple-app-site-association", ".well-known/acme/token"]
    assert tree(tmp_path / "out") == {name: files[name] for name in ["index.html", *published]}
    assert plan.stripped_prefix == folder.rstrip("/")


def test_well_known_beside_the_zipped_folder_is_not_the_sites(tmp_path: Path) -> None:
    files = {"site/index.html": b"home", ".well-known/security.txt": b"outside", "site/.well-known/a.txt": b"in"}
    assert [f.target for f in unpack(std_zip(files), tmp_path / "out").files] == ["index.html", ".well-known/a.txt"]


def test_streamed_archives_with_data_descriptors_are_accepted(tmp_path: Path) -> None:
    files = {"index.html": b"<h1>streamed</h1>", "big.bin": os.urandom(70_000)}
    unpack(streamed_zip(files), tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_unicode_names_that_do_not_collide_are_kept(tmp_path: Path) -> None:
    files = {"caf\u00e9.html": b"a", "na\u00efve/\u65e5\u672c.html": b"b"}
    unpack(std_zip(files), tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_extract_never_reuses_an_existing_destination(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        unpack(std_zip({"index.html": b"a"}), tmp_path / "out")


def test_self_extracting_prefixes_and_comments_are_accepted(tmp_path: Path) -> None:
    data = b"#!/bin/sh\nexit 0\n" * 10 + std_zip({"index.html": b"hi", "a/b.css": b"x"})
    unpack(data, tmp_path / "prefixed")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", b"hi")
        archive.comment = b"made by hand"
    unpack(buffer.getvalue(), tmp_path / "commented")
    assert tree(tmp_path / "prefixed") == {"index.html": b"hi", "a/b.css": b"x"}
    assert tree(tmp_path / "commented") == {"index.html": b"hi"}


def zip_folder(folder: Path, *flags: str) -> bytes:
    target = folder.parent / "made-by-zip.zip"
    runner.run(["zip", "-q", "-r", *flags, str(target), folder.name], cwd=folder.parent, timeout=60)
    return target.read_bytes()


def test_a_folder_zipped_by_info_zip_is_accepted(tmp_path: Path) -> None:
    site = tmp_path / "my-site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_bytes(b"<h1>zip -r</h1>")
    (site / "css" / "site.css").write_bytes(b"body{}")
    (site / ".DS_Store").write_bytes(b"junk")
    plan = unpack(zip_folder(site), tmp_path / "out")
    assert plan.stripped_prefix == "my-site"
    assert tree(tmp_path / "out") == {"index.html": b"<h1>zip -r</h1>", "css/site.css": b"body{}"}


def test_a_link_stored_by_info_zip_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "my-site"
    site.mkdir()
    (site / "index.html").write_bytes(b"<h1>hi</h1>")
    os.symlink("/etc/passwd", site / "passwd.html")
    with pytest.raises(InvalidArchiveError, match="symbolic link"):
        unpack(zip_folder(site, "--symlinks"), tmp_path / "out")


def test_archive_limits_default_to_the_settings_of_the_same_names(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert ArchiveLimits() == ArchiveLimits.from_settings(settings)
    assert ArchiveLimits() == ArchiveLimits(
        max_entries=20_000,
        max_unpacked_bytes=1024 * MiB,
        max_compression_ratio=200,
        max_path_length=1024,
        max_name_length=255,
        max_path_depth=32,
    )
    smaller = Settings(data_dir=tmp_path, max_entries=7, max_path_depth=3)
    assert ArchiveLimits.from_settings(smaller) == ArchiveLimits(max_entries=7, max_path_depth=3)


# -- each file written once, and that file is the blob ---------------------------------------------
def test_a_new_file_is_written_once_and_becomes_its_blob(tmp_path: Path) -> None:
    same = os.urandom(3000)
    files = {f"page{n}.html": same for n in range(6)} | {f"other{n}.bin": os.urandom(2000) for n in range(9)}
    unpack(std_zip(files), tmp_path / "out")
    store = ArtifactStore(tmp_path / "out-store")
    for name, data in files.items():
        placed = (tmp_path / "out" / name).stat()
        blob = store.path(hashlib.sha256(data).hexdigest()).stat()
        assert placed.st_ino == blob.st_ino, name  # a link to the blob, not a copy
        assert stat.S_IMODE(placed.st_mode) == 0o444
    # Six entries of one content, extracted by two threads: one blob with six links, and the store's own.
    assert store.path(hashlib.sha256(same).hexdigest()).stat().st_nlink == 7
    assert list(store.tmp.iterdir()) == []
    assert list(store.crc_index.iterdir()) == []  # small files need no hint: they are hashed in memory


def test_a_known_file_is_not_written_again(tmp_path: Path) -> None:
    files = {"a.html": os.urandom(4000), "big.bin": os.urandom(SMALL_FILE + 10)}
    unpack(std_zip(files), tmp_path / "out")
    store = ArtifactStore(tmp_path / "out-store")
    before = {name: store.path(hashlib.sha256(data).hexdigest()).stat().st_ino for name, data in files.items()}
    assert len(list(store.crc_index.iterdir())) == 1  # the large file's hint
    raw = io.BytesIO(std_zip(files))
    with open_archive(raw) as archive:
        written = extract(archive, plan_extraction(archive, raw, TEST_LIMITS), tmp_path / "again", store)
    assert written == 0
    for name in files:
        assert (tmp_path / "again" / name).stat().st_ino == before[name]


def test_a_corrupt_entry_stops_both_threads_with_a_readable_error(tmp_path: Path) -> None:
    good = {f"f{n:03}.html": os.urandom(1500) for n in range(40)}
    data = bytearray(std_zip(good))
    # Flip bytes inside the stored data of one entry in the middle: its crc32 no longer matches.
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as probe:
        info = probe.getinfo("f020.html")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[start : start + 8] = bytes(8)
    with pytest.raises(InvalidArchiveError, match="f020.html"):
        unpack(bytes(data), tmp_path / "out")


def test_a_file_named_as_long_as_names_get_is_adopted_when_its_blob_exists(tmp_path: Path) -> None:
    # The two threads of a ZIP's extraction can both write the same new content; the second file
    # is then replaced by a link to the blob, under a temporary name that must fit too.
    store = ArtifactStore(tmp_path / "store")
    store.prepare()
    digest = store.add_stream([b"same"])
    release = tmp_path / "release"
    release.mkdir()
    path = release / ("n" * 250 + ".html")  # 255 bytes: NAME_MAX
    path.write_bytes(b"same")
    os.chmod(path, 0o444)
    assert store.adopt_file(str(path), digest) is False
    assert path.stat().st_ino == store.path(digest).stat().st_ino
    assert [p.name for p in release.iterdir()] == [path.name]

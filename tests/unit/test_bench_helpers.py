from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from bench.report import Row, percentile, render_table
from bench.site import generate_site, write_incompressible_zip, write_zip


def _digest(seed: int) -> str:
    hasher = hashlib.sha256()
    for item in generate_site(seed, files=120, total_bytes=600_000):
        hasher.update(item.path.encode() + b"\0" + item.data)
    return hasher.hexdigest()


def test_the_same_seed_generates_the_same_site() -> None:
    assert _digest(7) == _digest(7)
    assert _digest(7) != _digest(8)


def test_generated_site_has_the_requested_count_size_and_kinds() -> None:
    site = generate_site(1, files=200, total_bytes=1_000_000)
    assert len(site) == 200
    assert len({item.path for item in site}) == 200
    assert sum(len(item.data) for item in site) == 1_000_000
    assert "index.html" in {item.path for item in site}
    suffixes = {item.path.rsplit(".", 1)[-1] for item in site}
    assert {"html", "css", "js"} <= suffixes and suffixes - {"html", "css", "js"}


def test_a_site_too_small_for_its_file_count_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_site(1, files=100, total_bytes=1000)


def test_zips_are_readable_by_everyone_and_hold_the_site(tmp_path: Path) -> None:
    site = generate_site(3, files=40, total_bytes=200_000)
    with zipfile.ZipFile(write_zip(site, tmp_path / "site.zip")) as archive:
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o100644}
        assert {item.path: item.data for item in site} == {n: archive.read(n) for n in archive.namelist()}


def test_incompressible_zip_is_stored_and_as_large_as_asked(tmp_path: Path) -> None:
    with zipfile.ZipFile(write_incompressible_zip(tmp_path / "big.zip", seed=1, total_bytes=300_000)) as archive:
        blobs = [info for info in archive.infolist() if info.filename.startswith("blobs/")]
        assert sum(info.file_size for info in blobs) == 300_000
        assert {info.compress_type for info in blobs} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 50, 5.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        (list(map(float, range(1, 101))), 95, 95.05),
    ],
)
def test_percentile_interpolates_between_ranks(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_table_aligns_columns_and_marks_goals() -> None:
    table = render_table(
        [
            Row("upload", "1 s", "1.2 s", "1.20", "<= 1.5", True),
            Row("rollback p95", "20 ms", "40 ms", "2.00", "(reported)", None),
            Row("rss", "50 MB", "200 MB", "4.00", "<= 150 MB", False),
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| measurement") and set(lines[1]) == {"|", "-"}
    assert len({len(line) for line in lines}) == 1
    assert lines[2].rstrip(" |").endswith("PASS") and lines[4].rstrip(" |").endswith("MISS")
    assert "PASS" not in lines[3] and "MISS" not in lines[3]

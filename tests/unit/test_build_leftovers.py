"""Build trees a stopped service left in builds/work are removed when the workers start."""

from __future__ import annotations

import time
from pathlib import Path

from drophost.gitops.build import Builder
from drophost.gitops.mirror import GitSource
from drophost.settings import Settings


def test_the_build_trees_a_stopped_service_left_are_discarded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    work = settings.builds_dir / "work"
    for name in ("17", "18"):
        (work / name / "public").mkdir(parents=True)
        (work / name / "public" / "index.html").write_text("half built")
    builder = Builder(settings, GitSource(settings), {})
    assert builder.discard_leftovers() == 2
    assert list(work.iterdir()) == []  # moved aside at once; their files go in the background
    trash = settings.builds_dir / "trash"
    deadline = time.monotonic() + 30
    while any(trash.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(trash.iterdir()) == []
    assert builder.discard_leftovers() == 0


def test_no_work_folder_no_leftovers(tmp_path: Path) -> None:
    assert Builder(Settings(data_dir=tmp_path), GitSource(Settings(data_dir=tmp_path)), {}).discard_leftovers() == 0

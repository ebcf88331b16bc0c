"""A sandboxed build returns only once every process it started is gone: what the command leaves
running could otherwise still write into an output the service is already hashing into the store."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from drophost.pipeline import sandbox

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def _running_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@needs_bwrap
@pytest.mark.parametrize("round_", range(5))
def test_nothing_a_build_left_running_outlives_the_sandbox(tmp_path: Path, round_: int) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    marker = f"DROPHOST_TEST_MARKER_{uuid.uuid4().hex}"
    # A writer that never stops, left behind by a command that exits at once.
    script = "(i=0; while :; do i=$((i+1)); echo $i > counter; done) & sleep 0.2; exit 0"
    job = sandbox.Job(command=("/bin/sh", "-c", script), tree=tree, workdir="", env=((marker, "1"),))
    argv = sandbox.plan_bwrap(
        shutil.which("bwrap") or "bwrap", job, sandbox.Limits(60, 1 << 30, 64, 64, 1 << 20), sandbox.host_system()
    )
    lines: list[str] = []
    sandbox.run(
        argv, cwd=Path("/"), env={"PATH": sandbox.PATH}, timeout=60, run_as=None, on_line=lines.append, sandboxed=True
    )
    assert _running_with(marker) == [], lines
    written = (tree / "counter").read_bytes()  # (it may be empty: the writer killed between truncating and writing)
    assert (tree / "counter").read_bytes() == written  # nothing writes it any more


@needs_bwrap
def test_a_sandbox_bwrap_refuses_to_make_ends_with_its_reason(tmp_path: Path) -> None:
    job = sandbox.Job(command=("/bin/true",), tree=tmp_path / "missing", workdir="")
    argv = sandbox.plan_bwrap(
        shutil.which("bwrap") or "bwrap", job, sandbox.Limits(60, 1 << 30, 64, 64, 1 << 20), sandbox.host_system()
    )
    lines: list[str] = []
    with pytest.raises(sandbox.BuildError):
        sandbox.run(
            argv,
            cwd=Path("/"),
            env={"PATH": sandbox.PATH},
            timeout=60,
            run_as=None,
            on_line=lines.append,
            sandboxed=True,
        )
    assert lines  # bwrap's own message, and no wait for a pid 1 that never started

"""sandbox.run(sandboxed=True) returns only once the sandbox's first process (bwrap's --info-fd
child-pid) has exited, not when bwrap does: a stand-in for bwrap that leaves its child running."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from drophost.errors import BuildError
from drophost.pipeline import sandbox

# Takes --info-fd N as bwrap does, starts a child that writes `done` after 0.5 s, reports the
# child's pid there and exits at once, as bwrap does when the command ends.
FAKE_BWRAP = textwrap.dedent(
    """
    import json, os, sys, time
    fd = int(sys.argv[sys.argv.index("--info-fd") + 1])
    done = sys.argv[-1]
    child = os.fork()
    if child == 0:
        os.close(fd)
        time.sleep(0.5)
        open(done, "w").write("late")
        os._exit(0)
    os.write(fd, json.dumps({"child-pid": child}).encode())
    os.close(fd)
    print("command ended")
    """
)


def test_a_sandboxed_run_returns_after_the_sandboxs_first_process_has_exited(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!{sys.executable}\n{FAKE_BWRAP}")
    fake.chmod(0o755)
    done = tmp_path / "done"
    lines: list[str] = []
    argv = [str(fake), str(done)]
    sandbox.run(argv, cwd=tmp_path, env={}, timeout=30, run_as=None, on_line=lines.append, sandboxed=True)
    assert lines == ["command ended"]
    assert done.read_text() == "late"  # the child had ended before run() returned


def test_a_bwrap_that_fails_before_starting_a_sandbox_is_not_waited_for(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('bwrap: no user namespaces')\nsys.exit(1)\n")
    fake.chmod(0o755)
    argv = [str(fake)]
    lines: list[str] = []
    with pytest.raises(BuildError):
        sandbox.run(argv, cwd=tmp_path, env={}, timeout=30, run_as=None, on_line=lines.append, sandboxed=True)
    assert lines == ["bwrap: no user namespaces"]

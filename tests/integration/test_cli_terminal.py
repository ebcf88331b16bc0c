"""The CLI's questions, asked on a real terminal (a pty) and answered by typing; never asked without one."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from drophost.client.http import EXIT_FAILED
from tests.harness.auth import TOKEN
from tests.harness.stacks import LiveStack


class Terminal:
    """`drophost ...` with a pty as its stdin, stdout and stderr, as a person runs it."""

    def __init__(self, live: LiveStack, *argv: str, cwd: Path | None = None) -> None:
        controller, terminal = pty.openpty()
        env = {
            "DROPHOST_URL": live.base_url,
            "DROPHOST_API_TOKEN": TOKEN,
            "HOME": "/nonexistent",
            "PATH": "/usr/bin:/bin",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "drophost", *argv],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(terminal)
        self.controller = controller
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline or not self._read(deadline - time.monotonic()):
                # Stopped here, so a failing test leaves no command running into the next one.
                self.process.kill()
                self.process.wait()
                os.close(self.controller)
                raise AssertionError(f"{text!r} never appeared; the terminal shows {self.seen!r}")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.controller, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.controller)
        return code, self.seen.replace("\r\n", "\n")

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.controller], [], [], max(0.0, wait))
        if not ready:
            return False
        try:
            data = os.read(self.controller, 4096)
        except OSError:  # EIO: the command ended and closed the terminal
            return False
        self.seen += data.decode(errors="replace")
        return bool(data)


def run(live: LiveStack, *argv: str) -> subprocess.CompletedProcess[str]:
    """The same command without a terminal (a script, CI)."""
    return subprocess.run(
        [sys.executable, "-m", "drophost", *argv],
        env={
            "DROPHOST_URL": live.base_url,
            "DROPHOST_API_TOKEN": TOKEN,
            "HOME": "/nonexistent",
            "PATH": "/usr/bin:/bin",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def zip_of(path: Path, text: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", text)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_guessed_slot_live_from_another_source_is_replaced_only_when_confirmed(
    live: LiveStack, tmp_path: Path
) -> None:
    first = zip_of(tmp_path / "acme-handbook.zip", "the handbook")
    assert run(live, "deploy", str(first)).returncode == 0
    other = zip_of(tmp_path / "ACME Handbook.zip", "another handbook")

    shell = Terminal(live, "deploy", str(other))
    shown = shell.expect("Replace it? [y/N] ")
    assert "acme-handbook is live (deployment 1, from acme-handbook.zip, " in shown
    assert "UTC (just now)" in shown or "min ago)" in shown
    shell.type("n")
    code, output = shell.finish()
    assert code == EXIT_FAILED and "drophost: nothing was deployed; --yes deploys without asking" in output
    assert live.get("/d/acme-handbook/").text == "the handbook"

    shell = Terminal(live, "deploy", str(other))
    shell.expect("Replace it? [y/N] ")
    shell.type("y")
    code, output = shell.finish()
    assert code == 0 and "acme-handbook is live at" in output
    assert live.get("/d/acme-handbook/").text == "another handbook"

    # The same file again is a new version of it: nothing to ask.
    code, output = Terminal(live, "deploy", str(other), "--progress", "never").finish()
    assert code == 0 and "Replace it?" not in output
    # --yes, and a script without a terminal, deploy as before.
    code, output = Terminal(live, "deploy", str(first), "--yes", "--progress", "never").finish()
    assert code == 0 and "Replace it?" not in output
    assert run(live, "deploy", str(other)).returncode == 0
    assert live.get("/d/acme-handbook/").text == "another handbook"


def test_a_named_slot_close_to_an_existing_one_is_created_only_when_confirmed(live: LiveStack, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "index.html").write_text("docs")
    assert run(live, "deploy", str(folder), "--slot", "team-docs").returncode == 0

    shell = Terminal(live, "deploy", str(folder), "--slot", "team-doc")
    shell.expect("no slot 'team-doc'; did you mean 'team-docs'? Create a new site 'team-doc'? [y/N] ")
    shell.type("")  # Enter: the default is no
    code, output = shell.finish()
    assert code == EXIT_FAILED and "nothing was deployed" in output
    assert live.get("/d/team-doc/").status_code == 404

    # The existing slot, or a name unlike any, is not asked about.
    code, output = Terminal(live, "deploy", str(folder), "--slot", "team-docs", "--progress", "never").finish()
    assert code == 0 and "did you mean" not in output
    code, output = Terminal(live, "deploy", str(folder), "--slot", "marketing", "--progress", "never").finish()
    assert code == 0 and "did you mean" not in output

    shell = Terminal(live, "deploy", str(folder), "--slot", "team-doc", "--progress", "never")
    shell.expect("[y/N] ")
    shell.type("yes")
    code, output = shell.finish()
    assert code == 0 and "team-doc is live at" in output
    # Scripts keep today's behaviour.
    assert run(live, "deploy", str(folder), "--slot", "team-dcs").returncode == 0


def test_delete_asks_for_the_slot_name_on_a_terminal(live: LiveStack, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "index.html").write_text("old")
    assert run(live, "deploy", str(folder)).returncode == 0

    shell = Terminal(live, "delete", "old")
    shown = shell.expect("Type the slot's name (old) to delete it: ")
    assert "This deletes old for good: it goes offline and its 1 version, its deployments" in shown
    shell.type("ol")
    code, output = shell.finish()
    assert code == EXIT_FAILED and "drophost: old was not deleted" in output
    assert live.get("/d/old/").text == "old"

    shell = Terminal(live, "delete", "old")
    shell.expect("to delete it: ")
    shell.type("old")
    code, output = shell.finish()
    assert code == 0 and "old is deleted, with its 1 deployment" in output
    assert live.get("/d/old/").status_code == 404
    # Without a terminal, only with --yes.
    result = run(live, "delete", "old")
    assert result.returncode == 5 and result.stderr == "drophost: no such slot 'old'\n"

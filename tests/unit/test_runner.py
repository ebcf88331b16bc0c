"""The one subprocess runner: what a timeout stops."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from drophost import runner
from drophost.errors import CommandError


def running(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False).returncode == 0


def test_a_timeout_stops_what_the_command_started_too() -> None:
    # The shell's child keeps the output pipe open: stopping only the shell would leave it running
    # and the runner waiting for the pipe to close.
    marker = f"sleep 31.{os.getpid()}"
    started = time.monotonic()
    with pytest.raises(CommandError) as stopped:
        runner.run(["sh", "-c", f"echo begun >&2; {marker} & wait"], timeout=0.5)
    assert stopped.value.message == "sh timed out after 0.5s"
    assert stopped.value.output == "begun"
    assert time.monotonic() - started < 20  # not the child's 31 s: the pipe was closed by its death
    deadline = time.monotonic() + 5
    while running(marker):
        assert time.monotonic() < deadline, "the command's child outlived the timeout"
        time.sleep(0.05)


def test_input_output_and_failures_are_as_before() -> None:
    result = runner.run(["sh", "-c", "cat; echo err >&2"], input_bytes=b"in\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"in\n", b"err\n")
    with pytest.raises(CommandError) as failed:
        runner.run(["sh", "-c", "echo why >&2; exit 3"])
    assert (failed.value.returncode, failed.value.output) == (3, "why")
    assert runner.run(["sh", "-c", "exit 4"], check=False).returncode == 4
    with pytest.raises(CommandError, match="could not be started"):
        runner.run(["/nonexistent/command"])

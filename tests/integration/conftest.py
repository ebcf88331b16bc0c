"""Fixtures shared by the integration tests that start `drophost up` itself."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from drophost.localdb import LocalPostgres
from tests.harness.receiver import Receiver
from tests.harness.scratch import make_scratch_dir
from tests.integration.up_process import alive, read_pid


@pytest.fixture
def up_data_dir(scratch_root: Path) -> Iterator[Path]:
    path = make_scratch_dir("up-", scratch_root)
    yield path
    # If the test failed half-way, nginx and the private cluster may still run: stop them.
    nginx_pid = path / "nginx" / "nginx.pid"
    if nginx_pid.exists() and alive(read_pid(nginx_pid)):
        os.kill(read_pid(nginx_pid), signal.SIGQUIT)
    if (path / "postgres" / "data" / "postmaster.pid").exists():
        LocalPostgres(path / "postgres", run_as="drophost").stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP server that records the requests it is sent and answers 200 (notifications, statuses)."""
    server = Receiver()
    server.status = 200
    yield server
    server.close()

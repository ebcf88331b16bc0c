"""The pytest fixtures for real parts: a throwaway PostgreSQL cluster, nginx on a free port, the app.

What they start is built by the harness (tests/harness/), which test modules and bench/ import.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings
from tests.harness.database import fresh_database, running_postgres
from tests.harness.processes import start_nginx, stop_process
from tests.harness.scratch import scratch_dir
from tests.harness.stacks import LiveStack, Stack, running_live_stack, running_stack, stack_settings

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def scratch_root() -> Iterator[Path]:
    """A world-traversable scratch folder: nginx workers and PostgreSQL run as other users."""
    with scratch_dir("dh-tests-") as root:
        yield root


@pytest.fixture(scope="session")
def postgres_server(scratch_root: Path) -> Iterator[str]:
    """A DSN for a maintenance database: DATABASE_URL if given, else a private cluster."""
    with running_postgres(scratch_root) as dsn:
        yield dsn


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    with fresh_database(postgres_server, f"t{os.getpid()}_{next(_database_numbers)}") as conninfo:
        yield conninfo


@pytest.fixture
def data_dir(scratch_root: Path) -> Iterator[Path]:
    with scratch_dir("data-", scratch_root) as path:
        yield path


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    return stack_settings(data_dir, database_url)


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    with running_stack(settings) as running:
        yield running


@pytest.fixture
def stack_factory(settings: Settings) -> Iterator[object]:
    """For tests that restart the app over the same data: call with Settings overrides."""
    started: list[subprocess.Popen[bytes]] = []

    def make(**overrides: Any) -> tuple[Settings, Nginx, subprocess.Popen[bytes]]:
        chosen = replace(settings, **overrides) if overrides else settings
        nginx, process = start_nginx(chosen)
        started.append(process)
        return chosen, nginx, process

    yield make
    for process in started:
        stop_process(process)


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveStack]:
    with running_live_stack(settings) as running:
        yield running

"""An idle git worker: its claim of a build slot ends without waking the other workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from drophost.gitops.worker import Worker
from drophost.settings import Settings
from drophost.store import gitjobs


class _Pool:
    @contextmanager
    def connection(self) -> Iterator[object]:
        yield object()


class _Builder:
    def __init__(self) -> None:
        self.slots = threading.Semaphore(1)

    def reserve(self, *, blocking: bool = False) -> bool:
        return self.slots.acquire(blocking=blocking)

    def release(self) -> None:
        self.slots.release()


def test_an_idle_claim_wakes_no_other_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Waking them made idle workers wake each other forever, each polling the database.
    monkeypatch.setattr(gitjobs, "claim_next", lambda conn, skip=None: None)
    intake = SimpleNamespace(wake=threading.Event(), next_removal=lambda: None)
    builder = _Builder()
    worker = Worker(
        Settings(data_dir=tmp_path),
        _Pool(),  # type: ignore[arg-type]
        deployer=None,  # type: ignore[arg-type]
        trees=SimpleNamespace(source=None),  # type: ignore[arg-type]
        intake=intake,  # type: ignore[arg-type]
        stop=threading.Event(),
        builder=builder,  # type: ignore[arg-type]
    )
    assert worker.work_once() is False
    assert not intake.wake.is_set()
    assert builder.reserve() is True  # the build slot was given back

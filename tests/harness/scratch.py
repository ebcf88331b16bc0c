"""Scratch folders that nginx workers and PostgreSQL, which run as other users, can traverse."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def make_scratch_dir(prefix: str, parent: Path | str = "/tmp") -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o755)
    return path


@contextmanager
def scratch_dir(prefix: str, parent: Path | str = "/tmp") -> Iterator[Path]:
    """A fresh scratch folder, removed with everything in it afterwards."""
    path = make_scratch_dir(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

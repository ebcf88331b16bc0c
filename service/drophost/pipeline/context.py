"""What every pipeline step shares: settings, the database pool, nginx, the artifact store, the
activator (the only writer of what nginx serves) and one lock per slot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.pipeline.activate import Activator
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings


class Context:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], nginx: Nginx) -> None:
        self.settings = settings
        self.pool = pool
        self.nginx = nginx
        self.artifacts = ArtifactStore(settings.data_dir / "store")
        self.activator = Activator(nginx)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @contextmanager
    def slot_lock(self, slot: str) -> Iterator[None]:
        """Serialise everything that changes one slot; other slots proceed in parallel."""
        with self._locks_guard:
            lock = self._locks.setdefault(slot, threading.Lock())
        with lock:
            yield

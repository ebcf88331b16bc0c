"""What every pipeline step shares: settings, the environment, the database pool, nginx, the
artifact store, the activator (the only writer of what nginx serves) and one lock per slot."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.pipeline.activate import Activator
from drophost.pipeline.artifacts import ArtifactStore
from drophost.pipeline.feedback import FeedbackConfig
from drophost.pipeline.nginx import Nginx
from drophost.pipeline.retention import Removals
from drophost.settings import Settings


class Context:
    def __init__(
        self, settings: Settings, pool: ConnectionPool[Any], nginx: Nginx, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        # Where `access: {basic_auth_env: NAME}` finds its htpasswd lines (default: the process's).
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.pool = pool
        self.nginx = nginx
        self.artifacts = ArtifactStore(settings.data_dir / "store")
        self.activator = Activator(nginx)
        # The statuses and notifications deploy.yaml declares (set by gitops when one is applied).
        self.feedback = FeedbackConfig()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Releases retention dropped, removed after the deploy that dropped them answered.
        self.removals = Removals(self.slot_lock)

    @contextmanager
    def slot_lock(self, slot: str) -> Iterator[None]:
        """Serialise everything that changes one slot; other slots proceed in parallel."""
        with self._locks_guard:
            lock = self._locks.setdefault(slot, threading.Lock())
        with lock:
            yield

"""Group commit of slot switches: concurrent switches share one nginx -t and one reload.

The validate-swap-reload step is serialised across slots. Switches that arrive while another
one holds the lock wait anyway, so the next holder applies all of them at once: one `nginx -t`
of the configuration with every change, one rename, one SIGHUP. If that test fails, each change
is tested on its own, so a rejected config still never goes live and fails only its own request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from drophost.errors import DrophostError
from drophost.nginx import Nginx


@dataclass
class _Pending:
    slot: str
    text: str | None
    applied: bool = False
    error: BaseException | None = None
    old_workers: frozenset[int] = frozenset()


class SwitchBatcher:
    def __init__(self, nginx: Nginx, lock: threading.Lock) -> None:
        self.nginx = nginx
        self.lock = lock
        self._pending: list[_Pending] = []
        self._guard = threading.Lock()

    def switch(self, slot: str, text: str | None) -> frozenset[int]:
        """Validate, install and reload `slot` (with whatever else is waiting); return the old workers.

        Callers hold the slot's own lock, so a batch never holds two changes of one slot.
        """
        mine = _Pending(slot, text)
        with self._guard:
            self._pending.append(mine)
        with self.lock:
            if not mine.applied:
                with self._guard:
                    batch, self._pending = self._pending, []
                try:
                    self._apply(batch)
                except BaseException as exc:
                    for pending in batch:
                        pending.error = pending.error or exc
                    raise
                finally:
                    for pending in batch:
                        pending.applied = True
        if mine.error is not None:
            raise mine.error
        return mine.old_workers

    def _apply(self, batch: list[_Pending]) -> None:
        previous = {pending.slot: self.nginx.entries.get(pending.slot) for pending in batch}
        try:
            self.nginx.check_candidates({pending.slot: pending.text for pending in batch})
            accepted = batch
            self.nginx.install_many({pending.slot: pending.text for pending in batch})
        except DrophostError as exc:
            self.nginx.discard_staged()
            if len(batch) == 1:
                batch[0].error = exc
                return
            accepted = self._apply_one_by_one(batch)
        if accepted:
            try:
                old_workers = self.nginx.reload()
            except DrophostError:
                # nginx is not running: put the entries back, so it starts with the recorded versions.
                self.nginx.install_many(previous)
                raise
            for pending in accepted:
                pending.old_workers = old_workers

    def _apply_one_by_one(self, batch: list[_Pending]) -> list[_Pending]:
        accepted = []
        for pending in batch:
            try:
                self.nginx.check_candidates({pending.slot: pending.text})
            except DrophostError as exc:
                self.nginx.discard_staged()
                pending.error = exc
                continue
            self.nginx.install_many({pending.slot: pending.text})
            accepted.append(pending)
        return accepted

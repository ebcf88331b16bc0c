"""Slot switches: a link move when only the files change, else a group-committed nginx change.

A new version of a live slot whose sites map entry nginx already has (the usual deploy and
rollback) only moves the slot's link (Nginx.point): nothing is re-rendered, nothing reloaded,
and no other slot is touched, so it costs the same with 1 slot or 10,000. Anything that changes
what nginx parses - a slot added or removed, a template change - goes through nginx -t first.

The validate-swap-reload step is serialised across slots. Switches that arrive while another
one holds the lock wait anyway, so the next holder applies all of them at once: one `nginx -t`
of the configuration with every change, one rename, one SIGHUP. If that test fails, each change
is tested on its own, so a rejected config still never goes live and fails only its own request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from drophost.errors import DeployFailedError, DrophostError
from drophost.pipeline.nginx import Nginx


@dataclass
class _Pending:
    slot: str
    text: str | None
    release_dir: Path | str | None
    applied: bool = False
    error: BaseException | None = None
    old_workers: frozenset[int] = frozenset()


class SwitchBatcher:
    def __init__(self, nginx: Nginx, lock: threading.Lock) -> None:
        self.nginx = nginx
        self.lock = lock
        self._pending: list[_Pending] = []
        self._guard = threading.Lock()

    def switch(self, slot: str, text: str | None, release_dir: Path | str | None) -> frozenset[int] | None:
        """Make nginx serve `release_dir` for `slot` with config `text` (None, None: take it offline).

        Returns the workers a reload replaced, or None when only the link moved (nothing to wait
        for). Callers hold the slot's own lock, so a batch never holds two changes of one slot.
        """
        if text is not None and release_dir is not None and self.nginx.has_entry(slot, text):
            if not self.nginx.is_running():
                raise DeployFailedError("nginx is not running")
            self.nginx.point(slot, release_dir)
            return None
        mine = _Pending(slot, text, release_dir)
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
        links = {pending.slot: self.nginx.pointed(pending.slot) for pending in batch}
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
            # A slot's link is in place before nginx learns of the slot, and goes only after.
            for pending in accepted:
                if pending.text is not None:
                    self.nginx.point(pending.slot, pending.release_dir)
            try:
                old_workers = self.nginx.reload()
            except DrophostError:
                # nginx is not running: put everything back, so it starts with the recorded versions.
                self.nginx.install_many(previous)  # entries are their own entry (site_entry)
                for pending in accepted:
                    self.nginx.restore_link(pending.slot, links[pending.slot])
                raise
            for pending in accepted:
                if pending.text is None:
                    self.nginx.point(pending.slot, None)
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

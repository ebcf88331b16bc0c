"""Activate: the only writer of what nginx serves (the sites map, the live/ links, the reload).

A new version of a live slot whose sites map entry and own part (its compiled rules) nginx
already has (the usual deploy and rollback) only moves the slot's link (Nginx.point): nothing is
re-rendered, nothing reloaded, and no other slot is touched, so it costs the same with 1 slot or
10,000. Anything that changes what nginx parses - a slot added or removed, its rules changed, a
template change - goes through nginx -t first.

The validate-swap-reload step is serialised across slots. Switches that arrive while another
one holds the lock wait anyway, so the next holder applies all of them at once: one `nginx -t`
of the configuration with every change, one rename, one SIGHUP. If that test fails, each change
is tested on its own, so a rejected config still never goes live and fails only its own request.

Whatever the cause - a switch, putting one slot back to what PostgreSQL records, or start-up -
the files change in one sequence (_serve), so the order below holds everywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drophost.errors import DeployFailedError, DrophostError
from drophost.pipeline.nginx import Nginx
from drophost.pipeline.nginxconfig import release_link_target

log = logging.getLogger(__name__)

# What nginx should serve for a slot: its config (None: no entry) and the release its link leads
# to (None: no link).
Serving = tuple[str | None, Path | str | None]


@dataclass(frozen=True)
class Outcome:
    sites_changed: bool
    links_changed: int
    # The workers a reload replaced (None: nginx was not reloaded).
    old_workers: frozenset[int] | None


@dataclass
class _Pending:
    slot: str
    text: str | None
    release_dir: Path | str | None
    applied: bool = False
    error: BaseException | None = None
    old_workers: frozenset[int] = frozenset()


class Activator:
    def __init__(self, nginx: Nginx) -> None:
        self.nginx = nginx
        # nginx -t, the file swap and the reload of different slots must not interleave; it is brief.
        self.lock = threading.Lock()
        # Switches waiting for that lock are applied together: one nginx -t, one reload.
        self._pending: list[_Pending] = []
        self._guard = threading.Lock()

    def activate(self, slot: str, text: str | None, release_dir: Path | str | None) -> None:
        """Make nginx serve `release_dir` for `slot` with config `text` (None: take the slot offline;
        a config without a release: an entry that serves no files, see expired_config), and wait
        until it does.

        A config nginx does not have yet is only installed once nginx accepts the whole
        configuration; a config it has already (another version of a live slot) moves the link.
        """
        old_workers = self.switch(slot, text, release_dir)
        if old_workers is not None and not self.nginx.wait_for_reload(old_workers, slot, release_dir is not None):
            log.warning("nginx did not confirm slot %s in time", slot)

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

    def check(self, slot: str, text: str) -> None:
        """nginx -t the configuration as it would be with this config of the slot, changing nothing
        (a held draft: its push is refused now if nginx would refuse it when it goes live)."""
        if self.nginx.has_entry(slot, text):
            return
        with self.lock:
            try:
                self.nginx.check_candidates({slot: text})
            finally:
                self.nginx.discard_staged()

    def restore(self, slot: str, text: str | None, release_dir: Path | str | None) -> None:
        """Put one slot back to what PostgreSQL records (None, None: offline). No nginx -t: these
        are the files nginx had before the switch that could not be recorded."""
        with self.lock:
            _serve(self.nginx, {slot: (text, release_dir)}, switch=False)

    def serve_recorded(self, configs: Mapping[str, str], served: Mapping[str, Path]) -> Outcome:
        """At start: exactly these slots get an entry (`configs`) and a link (`served`, a subset);
        every other entry and link goes. Returns once nginx serves them all."""
        with self.lock:
            self.nginx.sweep_leftovers()
            changes: dict[str, Serving] = {slot: (text, served.get(slot)) for slot, text in configs.items()}
            outcome = _serve(self.nginx, changes, switch=False, every_slot=True)
        # Start-up is over only when nginx serves what PostgreSQL records, not merely was told to
        # (after the old workers let go, one request per live slot checks it).
        for slot in served:
            if outcome.old_workers is not None and not self.nginx.wait_for_reload(outcome.old_workers, slot, True):
                log.warning("nginx did not confirm slot %s in time", slot)
        return outcome

    def _apply(self, batch: list[_Pending]) -> None:
        accepted = self._accepted(batch)
        if accepted:
            outcome = _serve(self.nginx, {pending.slot: (pending.text, pending.release_dir) for pending in accepted})
            for pending in accepted:
                pending.old_workers = outcome.old_workers or frozenset()

    def _accepted(self, batch: list[_Pending]) -> list[_Pending]:
        """The changes nginx -t accepts: all of them in one test, else each tested on its own (on
        top of those accepted before it); a rejected change fails its own request."""
        try:
            self.nginx.check_candidates({pending.slot: pending.text for pending in batch})
            return batch
        except DrophostError as exc:
            self.nginx.discard_staged()
            if len(batch) == 1:
                batch[0].error = exc
                return []
        accepted: list[_Pending] = []
        changes: dict[str, str | None] = {}
        for pending in batch:
            try:
                self.nginx.check_candidates({**changes, pending.slot: pending.text})
            except DrophostError as exc:
                self.nginx.discard_staged()
                pending.error = exc
                continue
            changes[pending.slot] = pending.text
            accepted.append(pending)
        return accepted


def _serve(nginx: Nginx, changes: Mapping[str, Serving], *, switch: bool = True, every_slot: bool = False) -> Outcome:
    """The one sequence that changes what nginx serves; call it holding Activator.lock.

    A slot's link is in place before nginx learns of the slot, and goes only after it has forgotten it.
    switch: a change not recorded yet. nginx must be running and reload, or the entries and links
    are put back and the error raised, so what cannot be recorded is not served either.
    Otherwise the change is what PostgreSQL records: it stays on disk when nginx is not running
    (nginx reads it when it starts), and nginx reloads only if its sites map changed.
    every_slot (start-up): these are all the slots; every other entry and link goes, and the whole
    configuration is tested before the reload (the main config was just rendered again).
    """
    if every_slot:
        changes = {**{slot: (None, None) for slot in nginx.linked_slots()}, **changes}
    for _, release in changes.values():
        if release is not None:
            release_link_target(release)  # a stored path that is no release fails before anything changes
    previous = {slot: nginx.current_config(slot) for slot in changes} if switch else {}
    links = {slot: nginx.pointed(slot) for slot in changes} if switch else {}
    configs = {slot: text for slot, (text, _) in changes.items()}
    if every_slot:
        sites_changed = nginx.install_all({slot: text for slot, text in configs.items() if text is not None})
    else:
        sites_changed = nginx.install_many(configs)
    links_changed = sum(nginx.point(slot, release) for slot, (_, release) in changes.items() if release is not None)
    old_workers: frozenset[int] | None = None
    if switch:
        try:
            old_workers = nginx.reload()
        except DrophostError:
            # nginx is not running: put everything back, so it starts with the recorded versions.
            nginx.install_many(previous)
            for slot, target in links.items():
                nginx.restore_link(slot, target)
            raise
    elif sites_changed and nginx.is_running():
        if every_slot:
            nginx.test()
        old_workers = nginx.reload()
    going = [slot for slot, (_, release) in changes.items() if release is None]
    if going and old_workers is not None:
        # Old workers still hold the slot's entry until they stop accepting: a link removed before
        # that would let one of them answer nginx's own HTML 404 instead of the not-deployed answer.
        nginx.wait_for_reload(old_workers, going[0], False)
    links_changed += sum(nginx.point(slot, None) for slot in going)
    return Outcome(sites_changed=sites_changed, links_changed=links_changed, old_workers=old_workers)

"""Polling: deploy what webhooks missed, by asking each declared repository for its branch heads
and, for sites following tags, its tags. Pull requests come from webhooks only: a forge keeps a
closed pull request's ref, so its refs cannot tell an open one from a closed one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import DrophostError
from drophost.gitops import refs
from drophost.gitops.declared import Declared
from drophost.gitops.intake import Intake
from drophost.gitops.manifest import SiteSpec
from drophost.gitops.mirror import GitSource
from drophost.gitops.offline import remove_preview
from drophost.gitops.repourls import repo_key
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import gitjobs

log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Any],
        deployer: Deployer,
        source: GitSource,
        declared: Declared,
        intake: Intake,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.deployer = deployer
        self.source = source
        self.declared = declared
        self.intake = intake
        self._stop = stop
        # Hosted pushes whose post-receive never reached the service (the controller sets it: landing.py).
        self.catch_up: Callable[[], object] = lambda: None

    def interval(self) -> float:
        declared = self.declared.manifest.poll_interval
        return float(declared) if declared is not None else self.settings.poll_interval

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._poll_forever, name="drophost-poll", daemon=True)
        thread.start()
        return thread

    def _poll_forever(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(timeout=0.5):
            interval = self.interval()
            if interval <= 0 or time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # the poller must survive
                log.exception("polling failed")
            try:
                self.catch_up()
            except Exception:
                log.exception("catching up hosted pushes failed")

    def poll_once(self) -> list[int]:
        """Deploy what webhooks missed: new heads of declared branches, new or deleted preview branches."""
        queued: list[int] = []
        by_repo: dict[str, list[SiteSpec]] = {}
        for site in self.declared.manifest.sites:
            if not site.is_pull_request:
                by_repo.setdefault(repo_key(site.repo.text), []).append(site)
        for sites in by_repo.values():
            branch_sites = [site for site in sites if site.tags is None]
            # A hosted repository's tags are deployed by their push (post-receive): not read here,
            # where peeling them would start git object readers on this thread for nothing.
            tag_sites = [site for site in sites if site.tags is not None and not site.repo.is_hosted]
            try:
                heads = self.source.remote_heads(sites[0].repo) if branch_sites else {}
                tags = self.source.remote_tags(sites[0].repo) if tag_sites else {}
            except DrophostError as exc:
                log.info("polling %s: %s", sites[0].repo.shown, exc.message)
                continue
            for site in branch_sites:
                queued += self._poll_site(site, heads)
            for site in tag_sites:
                queued += self._poll_tags(site, tags)
        return queued

    def _poll_tags(self, site: SiteSpec, tags: dict[str, str]) -> list[int]:
        """The newest matching tag, unless the slot has it already (or has a newer one: no roll back)."""
        assert site.tags is not None
        newest = refs.newest(refs.matching_tags(tags, site.tags))
        if newest is None:
            return []
        with self.pool.connection() as conn:
            if gitjobs.last_commit(conn, site.slot) == tags[newest] or gitjobs.has_pending(conn, site.slot):
                return []
        return self.intake.queue_tag(site, newest, trigger="poll", pusher=None)

    def _poll_site(self, site: SiteSpec, heads: dict[str, str]) -> list[int]:
        branches = [b for b in heads if site.wants(b)] if site.is_preview else [site.branch]
        queued = []
        # A hosted repository's pushes go live from their own hooks (pre-receive makes the draft,
        # post-receive lands it; Landing.catch_up lands one whose post-receive never came): a head
        # read here mid-push would be stale.
        for branch in [] if site.repo.is_hosted else branches:
            head = heads.get(branch)
            if head is None:
                continue
            slot = site.slot_for(branch)
            with self.pool.connection() as conn:
                if gitjobs.last_commit(conn, slot) == head or gitjobs.has_pending(conn, slot):
                    continue
            queued.append(self.intake.enqueue(site, branch, trigger="poll", pusher=None))
        if site.is_preview:
            with self.pool.connection() as conn:
                previews = [r for r in gitjobs.managed_slots(conn) if r["template"] == site.slot]
            for row in previews:
                if repo_key(row["repo"]) == repo_key(site.repo.text) and row["branch"] not in heads:
                    remove_preview(self.pool, self.deployer, row["slot"], "poll")
        return queued

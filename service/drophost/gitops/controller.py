"""GitOps as one object for app.py and the web handlers; each job lives in the module named after it.

declared.py applies deploy.yaml, intake.py turns pushes into queued deploys, worker.py runs the
queue, poller.py finds what webhooks missed; mirror.py, tree.py and hosted.py are their git.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.gitops.build import Builder
from drophost.gitops.declared import Declared
from drophost.gitops.delivery import Delivery
from drophost.gitops.hosted import HostedRepos
from drophost.gitops.intake import Intake
from drophost.gitops.landing import Landing
from drophost.gitops.manifest import Manifest, token_for
from drophost.gitops.mirror import GitSource
from drophost.gitops.plan import DRIFT, Plan
from drophost.gitops.poller import Poller
from drophost.gitops.repourls import strip_credentials
from drophost.gitops.tree import Trees
from drophost.gitops.worker import Worker
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import audit, gitjobs

log = logging.getLogger(__name__)


class GitOps:
    def __init__(
        self, settings: Settings, pool: ConnectionPool[Any], deployer: Deployer, environ: Mapping[str, str]
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.source = GitSource(settings)
        self.trees = Trees(self.source)
        self.hosted = HostedRepos(settings, self.source)
        self.intake = Intake(settings, pool, deployer, self.source, environ)
        self.landing = Landing(settings, pool, deployer, self.source, self.intake)
        self.declared = Declared(settings, pool, deployer, self.hosted, self.intake, environ)
        self._stop = threading.Event()
        self.worker = Worker(
            settings,
            pool,
            deployer,
            self.trees,
            self.intake,
            self._stop,
            manifest=lambda: self.declared.manifest,
            builder=Builder(settings, self.source, environ),
        )
        self.poller = Poller(settings, pool, deployer, self.source, self.declared, self.intake, self._stop)
        # The outbox's commit statuses and notifications (deploy.yaml declares them).
        self.delivery = Delivery(settings, pool, environ, self._stop)
        # Tokens come from the deploy.yaml in force at each fetch, and the variables it names.
        self.poller.catch_up = lambda: self.landing.catch_up(self.declared.manifest, queue=False)
        self.source.tokens = lambda repo: token_for(self.declared.manifest, repo, environ)
        self.worker.site_rules = lambda slot, branch: self.declared.manifest.site_rules(slot, branch)
        self._threads: list[threading.Thread] = []

    @property
    def manifest(self) -> Manifest:
        return self.declared.manifest

    # -- start and stop ----------------------------------------------------------------------------
    def requeue(self, interrupted: list[int]) -> None:
        self.worker.requeue(interrupted)

    def load(self) -> Manifest:
        return self.declared.load()

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        return self.declared.apply(manifest)

    def prime_feedback(self) -> None:
        self.declared.prime_feedback()

    def apply_at_start(self) -> dict[str, Any]:
        """deploy.yaml, or the last good one when it is invalid (never an error: serving goes on)."""
        return self.declared.start()

    def start(self) -> None:
        """Start the workers, the poller and the outbox's delivery."""
        self.trees.prune_blobs()
        if self.worker.builder is not None and (left := self.worker.builder.discard_leftovers()):
            log.warning("removing %d build tree(s) a stopped service left behind", left)
        try:
            self.landing.catch_up(self.manifest, queue=True)
        except Exception:  # serving goes on; the poller tries again
            log.exception("catching up hosted pushes failed")
        self._threads = [*self.worker.start(), self.poller.start(), *self.delivery.start()]

    def stop(self) -> None:
        self._stop.set()
        self.intake.wake.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.git_timeout + 30)
        self._threads.clear()

    # -- what the web handlers call ----------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        return self.declared.reload()

    def current_plan(self, manifest: Manifest) -> Plan:
        return self.declared.current_plan(manifest)

    def drift(self) -> dict[str, str]:
        """Slots deploy.yaml manages from git that serve something else (a forced upload): slot -> why.

        The same fact `drophost plan` shows as drift, from the deploy.yaml in force.
        """
        return {change.slot: change.detail for change in self.current_plan(self.manifest).of(DRIFT)}

    def config_status(self) -> dict[str, Any]:
        return self.declared.status()

    def webhook(self, provider: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        return self.intake.webhook(self.declared.manifest, provider, headers, body)

    def deploy_from_api(self, body: Mapping[str, Any], actor: str | None = None) -> int:
        return self.intake.deploy_from_api(self.declared.manifest, body, actor)

    def hosted_push(self, name: str, updates: list[tuple[str, str, str]], pusher: str | None) -> list[int]:
        return self.intake.hosted_push(self.declared.manifest, name, updates, pusher)

    def hosted_paths(self, name: str, updates: list[tuple[str, str, str]]) -> dict[str, list[str]]:
        return self.intake.hosted_paths(self.declared.manifest, name, updates)

    def hosted_pre_receive(
        self, name: str, updates: list[tuple[str, str, str]], pusher: str | None, quarantine: object
    ) -> list[int]:
        objects = self.hosted.quarantine(name, quarantine)
        return self.intake.hosted_pre_receive(self.declared.manifest, name, updates, pusher, objects)

    def hosted_post_receive(self, name: str, updates: list[tuple[str, str, str]], pusher: str | None) -> list[str]:
        """The refs git moved: their drafts go live, deleted branches' previews go offline."""
        manifest = self.declared.manifest
        self.intake.hosted_deletions(manifest, name, updates, pusher)
        return self.landing.land(manifest, name, updates, pusher)

    def settle_push(self, deployment_ids: list[int]) -> list[dict[str, Any]]:
        return self.intake.settle_push(deployment_ids)

    def managing_repo(self, slot: str) -> str | None:
        """The repository deploy.yaml deploys `slot` from (a fixed site or a live preview), if any."""
        site = self.manifest.fixed_sites().get(slot)
        if site is not None:
            return strip_credentials(site.repo.text)
        with self.pool.connection() as conn:
            row = next((r for r in gitjobs.managed_slots(conn) if r["slot"] == slot), None)
        return strip_credentials(row["repo"]) if row is not None else None

    def lock_after_rollback(self, slot: str, version: int, actor: str) -> bool:
        """A manual rollback of a git-managed slot locks it, so the next push does not undo it."""
        repo = self.managing_repo(slot)
        if repo is None:
            return False
        reason = f"rolled back by hand to version {version}; pushes to {repo} do not go live until it is unlocked"
        with self.pool.connection() as conn:
            audit.lock_slot(conn, slot, reason, actor)
            audit.record(conn, actor=actor, action="lock", target=slot, result="locked", detail=reason)
        return True

    def wait_for(self, deployment_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        return self.intake.wait_for(deployment_ids, timeout)

"""Declared state: deploy.yaml loaded, planned against what is live, and applied."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.gitops.hosted import HostedRepos
from drophost.gitops.intake import Intake
from drophost.gitops.manifest import Manifest, load_file, secret_problems
from drophost.gitops.offline import take_offline
from drophost.gitops.plan import ADD, CHANGE, DEPLOY, REMOVE, Plan, plan
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import gitjobs

log = logging.getLogger(__name__)


class Declared:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Any],
        deployer: Deployer,
        hosted: HostedRepos,
        intake: Intake,
        environ: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.deployer = deployer
        self.hosted = hosted
        self.intake = intake
        self.environ = environ
        # The deploy.yaml applied last: webhooks, API deploys, hosted pushes and polling act on it.
        self.manifest = Manifest()
        self.problems: list[str] = []
        self._apply_lock = threading.Lock()

    def load(self) -> Manifest:
        if not self.settings.config:
            return Manifest()
        return load_file(Path(self.settings.config))

    def current_plan(self, manifest: Manifest) -> Plan:
        with self.pool.connection() as conn:
            managed = gitjobs.managed_slots(conn)
            live = gitjobs.live_slots(conn)
        return plan(manifest, managed, live)

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        """Make the live state what `manifest` declares: queue deploys, take removed slots offline."""
        with self._apply_lock:
            result = self.current_plan(manifest)
            self.manifest = manifest
            self.problems = secret_problems(manifest, self.environ)
            for problem in self.problems:
                log.error("deploy.yaml: %s (the site cannot take webhooks or fetch without it)", problem)
            for name in sorted(manifest.hosted_names()):
                self.hosted.ensure(name)
            queued: list[int] = []
            for change in result.of(REMOVE):
                take_offline(self.pool, self.deployer, change.slot)
            for change in result.of(ADD, CHANGE, DEPLOY):
                site = change.site
                assert site is not None
                with self.pool.connection() as conn:
                    gitjobs.upsert_managed(
                        conn, slot=site.slot, repo=site.repo.text, branch=site.branch, path=site.path, template=None
                    )
                if site.repo.is_hosted and not self.hosted.has_branch(site.repo, site.branch):
                    continue  # deployed by the first push
                queued.append(self.intake.enqueue(site, site.branch, trigger="config", pusher=None))
        return {"changes": result.to_json(), "queued": queued, "errors": self.problems}

    def reload(self) -> dict[str, Any]:
        """Read deploy.yaml again (an invalid file changes nothing) and apply it."""
        return self.apply(self.load())

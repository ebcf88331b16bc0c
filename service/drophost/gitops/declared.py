"""Declared state: deploy.yaml loaded, planned against what is live, and applied.

An invalid deploy.yaml never stops serving: the last good one (its text is kept in PostgreSQL when
applied) stays in force, and the error is kept here for /health, the dashboard and `drophost plan`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import DrophostError, ManifestError
from drophost.gitops.hosted import HostedRepos
from drophost.gitops.intake import Intake
from drophost.gitops.manifest import Manifest, SiteSpec, parse, read_file, secret_problems
from drophost.gitops.offline import take_offline
from drophost.gitops.plan import ADD, CHANGE, DEPLOY, REMOVE, Plan, plan
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import declared as declared_store
from drophost.store import gitjobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigError:
    """Why the deploy.yaml on disk is not in force, and since when it has been invalid."""

    error: str
    since: datetime


@dataclass(frozen=True)
class InForce:
    """The deploy.yaml applied last: its sha256 and when it was first applied (None: never, or no file)."""

    sha256: str
    applied_at: datetime


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
        self.error: ConfigError | None = None
        self.in_force: InForce | None = None
        self._apply_lock = threading.Lock()

    def load(self) -> Manifest:
        return self._read()[0]

    def status(self) -> dict[str, Any]:
        """For /health, the dashboard and plan: the error of the file on disk, if any, and what is in force."""
        error, in_force = self.error, self.in_force
        answer: dict[str, Any] = {"error": None, "since": None, "in_force": None}
        if error is not None:
            answer.update(error=error.error, since=error.since.isoformat())
        if in_force is not None:
            answer["in_force"] = {"sha256": in_force.sha256, "applied_at": in_force.applied_at.isoformat()}
        return answer

    def prime_feedback(self) -> None:
        """Before the start's reconcile: the statuses and notifications of deploy.yaml (or of the last
        good one), so the deploys a crash interrupted report their failure where they reported `pending`."""
        try:
            manifest, _ = self._read()
        except ManifestError:
            manifest = self._stored() or Manifest()
        self.deployer.feedback = manifest.feedback()

    def _stored(self) -> Manifest | None:
        with self.pool.connection() as conn:
            row = declared_store.last_good(conn)
        if row is None:
            return None
        try:
            return parse(row["text"].encode("utf-8"), row["file"])
        except ManifestError:
            return None

    def start(self) -> dict[str, Any]:
        """Apply deploy.yaml at start; an invalid one leaves the last good state (from PostgreSQL) in force."""
        try:
            manifest, raw = self._read()
        except ManifestError as exc:
            self._refuse(exc, "at start")
            return self._apply_last_good()
        return self.apply(manifest, raw)

    def current_plan(self, manifest: Manifest) -> Plan:
        with self.pool.connection() as conn:
            managed = gitjobs.managed_slots(conn)
            live = gitjobs.live_slots(conn)
        return plan(manifest, managed, live)

    def apply(self, manifest: Manifest, raw: bytes | None = None) -> dict[str, Any]:
        """Make the live state what `manifest` declares: queue deploys, take removed slots offline.

        `raw` is the file's text: once applied, it is the last good state a later invalid file leaves in force.
        """
        with self._apply_lock:
            result = self.current_plan(manifest)
            self.manifest = manifest
            # Outbox rows are planned inside the pipeline's transactions from this (never from API input).
            self.deployer.feedback = manifest.feedback()
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
                        conn, slot=site.slot, repo=site.repo.text, branch=site.tracked, path=site.path, template=None
                    )
                if site.tags is not None:
                    queued += self._queue_newest_tag(site, change.action)
                    continue
                if site.repo.is_hosted and not self.hosted.has_branch(site.repo, site.branch):
                    continue  # deployed by the first push
                if change.action == DEPLOY and self._failed_at_head(site):
                    continue
                queued.append(self.intake.enqueue(site, site.branch, trigger="config", pusher=None))
            if raw is not None:
                self._keep(manifest.file, raw)
        return {"changes": result.to_json(), "queued": queued, "errors": self.problems}

    def _queue_newest_tag(self, site: SiteSpec, action: str) -> list[int]:
        """A site following tags: deploy the newest matching tag there is (none yet: the first one's push)."""
        try:
            found = self.intake.newest_tag(site)
        except DrophostError as exc:
            log.warning("deploy.yaml: the tags of %s could not be listed for slot %s: %s", site.repo.shown, site.slot,
                        exc.message)  # fmt: skip
            return []
        if found is None:
            log.info("deploy.yaml: no tag of %s matches %s yet; slot %s waits for one", site.repo.shown, site.tags,
                     site.slot)  # fmt: skip
            return []
        tag, commit = found
        if action == DEPLOY and self._failed_at(site, commit):
            return []
        return self.intake.queue_tag(site, tag, trigger="config", pusher=None)

    def _failed_at_head(self, site: SiteSpec) -> bool:
        """Whether the slot's newest git deploy failed at the commit the branch still points at.

        A failed commit is not tried again (polling's rule too): a repository refused at its caps
        would otherwise be fetched again at every start and reload. A new commit, or a deploy asked
        for through the API, deploys it."""
        if self._failed_commit(site) is None:
            return False
        try:
            head = self.intake.source.remote_head(site.repo, site.branch)
        except DrophostError:
            return False
        return head is not None and self._failed_at(site, head)

    def _failed_commit(self, site: SiteSpec) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            newest = gitjobs.newest_git_deployment(conn, site.slot)
        if newest is None or newest["state"] != "failed" or not newest["commit_sha"]:
            return None
        return dict(newest)

    def _failed_at(self, site: SiteSpec, head: str) -> bool:
        newest = self._failed_commit(site)
        if newest is None or head != newest["commit_sha"]:
            return False
        reason = str(newest["error"] or "no reason recorded").splitlines()[0][:200]
        log.info(
            "deploy.yaml: slot %s is not deployed again: its last deploy of %s failed (%s)",
            site.slot,
            head[:12],
            reason,
        )
        return True

    def reload(self) -> dict[str, Any]:
        """Read deploy.yaml again and apply it; an invalid file changes nothing (ManifestError, kept for /health)."""
        try:
            manifest, raw = self._read()
        except ManifestError as exc:
            self._refuse(exc, "on reload")
            if self.in_force is not None:
                log.error("the last good deploy.yaml (sha256 %s) stays in force", self.in_force.sha256[:12])
            raise
        return self.apply(manifest, raw)

    # -- the file and the last good state --------------------------------------------------------
    def _read(self) -> tuple[Manifest, bytes | None]:
        if not self.settings.config:
            return Manifest(), None
        path = Path(self.settings.config)
        raw = read_file(path)
        return parse(raw, path.name), raw

    def _refuse(self, exc: ManifestError, when: str) -> None:
        previous = self.error
        since = previous.since if previous is not None else datetime.now(UTC)
        self.error = ConfigError(exc.message, since)
        log.error("deploy.yaml not applied %s: %s", when, exc.message)

    def _keep(self, file: str, raw: bytes) -> None:
        sha256 = hashlib.sha256(raw).hexdigest()
        with self.pool.connection() as conn:
            declared_store.save_good(conn, file=file, text=raw.decode("utf-8"), sha256=sha256)
            row = declared_store.last_good(conn)
        assert row is not None
        self.in_force = InForce(row["sha256"], row["applied_at"])
        self.error = None

    def _apply_last_good(self) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = declared_store.last_good(conn)
        if row is None:
            # Nothing valid was ever applied: no git sites are declared, but nothing live is taken
            # offline because of a bad file either (applying an empty manifest would do that).
            log.error("deploy.yaml: no last good state is stored; serving what is live, declaring no git sites")
            return {"changes": [], "queued": [], "errors": []}
        try:
            manifest = parse(row["text"].encode("utf-8"), row["file"])
        except ManifestError as exc:  # stored by a version whose checks were looser
            log.error("the stored last good deploy.yaml is no longer valid (%s); serving what is live", exc.message)
            return {"changes": [], "queued": [], "errors": []}
        self.in_force = InForce(row["sha256"], row["applied_at"])
        log.info("applying the last good deploy.yaml (sha256 %s, applied %s)", row["sha256"][:12], row["applied_at"])
        return self.apply(manifest)


def config_lines(config: dict[str, Any]) -> list[str]:
    """What `drophost plan` adds to its answer when the service's own deploy.yaml is invalid (see status())."""
    if not config["error"]:
        return []
    in_force = config["in_force"]
    if in_force:
        applied = in_force["applied_at"][:19].replace("T", " ")
        kept = f"the last good deploy.yaml (sha256 {in_force['sha256'][:12]}, applied {applied}) is in force"
    else:
        kept = "no deploy.yaml was ever applied: no git sites are declared, live sites stay served"
    since = config["since"][:19].replace("T", " ")
    return [f"The service's deploy.yaml is invalid since {since}: {config['error']}", f"Meanwhile {kept}."]

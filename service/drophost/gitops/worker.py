"""The background workers: claim a queued git deploy, fetch, write the commit's tree, publish it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import DrophostError
from drophost.gitops.build import Builder, Target
from drophost.gitops.intake import Intake
from drophost.gitops.manifest import Manifest, SiteSpec
from drophost.gitops.offline import remove_preview
from drophost.gitops.repourls import RepoUrl, parse_repo_url, repo_key, strip_credentials
from drophost.gitops.tree import Trees
from drophost.pipeline import record, releases
from drophost.pipeline.buildlog import BuildLog
from drophost.pipeline.buildoutput import same_files
from drophost.pipeline.deployer import Deployer
from drophost.pipeline.siterules import SiteOptions
from drophost.settings import Settings
from drophost.store import audit, deployments, gitjobs, slots

log = logging.getLogger(__name__)
WORKERS = 2
# A push that changes nothing under the site's path is not deployed again (the tree at `path` is
# the live commit's): pushes, webhooks and polling. A deploy.yaml or API deploy always runs, since
# it may be what changes the site's rules or build.
SKIP_UNCHANGED_TRIGGERS = ("push", "webhook", "poll")


def held_for_push(job: gitjobs.GitJob) -> bool:
    """A hosted push's draft: it goes live from post-receive, once git moved the branch to its commit."""
    return job.objects is not None and not job.activate


class Worker:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Any],
        deployer: Deployer,
        trees: Trees,
        intake: Intake,
        stop: threading.Event,
        manifest: Callable[[], Manifest] = Manifest,
        builder: Builder | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.deployer = deployer
        self.trees = trees
        self.source = trees.source
        self.intake = intake
        self._stop = stop
        self.manifest = manifest
        self.builder = builder
        # The site rules deploy.yaml gives a slot for a branch (set by GitOps to the manifest in force).
        self.site_rules: Callable[[str, str], SiteOptions | None] = lambda slot, branch: None

    def requeue(self, interrupted: list[int]) -> None:
        """Queue again the git deploys a restart interrupted (before deploy.yaml is applied)."""
        with self.pool.connection() as conn:
            for job in gitjobs.jobs_of(conn, interrupted):
                if job["commit_sha"] is not None:
                    continue  # a hosted push's own deploy: that push was refused when its hook died
                gitjobs.queue_deploy(
                    conn,
                    slot=job["slot"],
                    repo=job["repo"],
                    shown_repo=strip_credentials(job["repo"]),
                    branch=job["branch"],
                    path=job["path"],
                    template=job["template"],
                    trigger=job["trigger"] or "config",
                    pusher=job["pusher"],
                    ttl_seconds=job["ttl_seconds"],
                    ref=job["ref"],
                    activate=job["activate"],
                )

    def start(self) -> list[threading.Thread]:
        threads = []
        # One more worker than build slots: a deploy that needs no build never waits for builds.
        for number in range(max(WORKERS, self.settings.build_concurrency + 1)):
            thread = threading.Thread(target=self._work_forever, name=f"drophost-git-{number}", daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def _work_forever(self) -> None:
        while not self._stop.is_set():
            try:
                did = self.work_once()
            except Exception:  # the worker must survive a database hiccup
                log.exception("git worker failed")
                did = False
            # Stopping: no second wait for the database (at shutdown it may be gone, and each wait
            # for a connection lasts the pool's timeout).
            if not did and not self._stop.is_set():
                self.intake.wake.wait(timeout=self._idle_wait())
                self.intake.wake.clear()

    def _idle_wait(self) -> float:
        # Until a settling deploy may start, or a second (the wake event cuts either short).
        try:
            with self.pool.connection() as conn:
                due = gitjobs.seconds_to_next_job(conn, self._skipped_builds())
        except Exception:  # the worker must survive a database hiccup
            log.exception("git worker failed")
            return 1.0
        return 1.0 if due is None else min(1.0, max(due, 0.01))

    def work_once(self) -> bool:
        removal = self.intake.next_removal()
        if removal is not None:
            remove_preview(self.pool, self.deployer, removal, "webhook")
            return True
        reserved = self.builder is not None and self.builder.reserve()
        try:
            with self.pool.connection() as conn:
                # Every build slot taken: builds stay queued (newer pushes coalesce into them) and
                # this worker takes the next deploy that needs none.
                job = gitjobs.claim_next(conn, None if reserved or self.builder is None else self._build_targets())
        except BaseException:
            self._release(reserved, wake=False)
            raise
        if job is None or not self._builds(job):
            # Held only for the claim: no worker is woken by giving it back, or idle workers would
            # wake each other forever, polling the database hundreds of times a second.
            self._release(reserved, wake=False)
            reserved = False
        if job is None:
            return False
        if not reserved and self._builds(job) and self.builder is not None:
            # deploy.yaml gave the site a build: after the claim; it waits for a build slot here
            reserved = self.builder.reserve(blocking=True)
        try:
            self.run_job(job)
        finally:
            self._release(reserved)
            self.record_outcome(job)
        return True

    def _release(self, reserved: bool, *, wake: bool = True) -> None:
        if reserved and self.builder is not None:
            self.builder.release()
            if wake:
                self.intake.wake.set()  # a build left queued may start now

    def _skipped_builds(self) -> gitjobs.Builds | None:
        """The builds a worker would leave queued now (every build slot taken), else None. While a
        build runs, a build due behind it is not work to poll for: the slot's release wakes workers."""
        if self.builder is None:
            return None
        if self.builder.reserve():
            self.builder.release()
            return None
        return self._build_targets()

    def _build_targets(self) -> gitjobs.Builds:
        sites = [site for site in self.manifest().sites if site.build is not None]
        return gitjobs.Builds(
            slots=tuple(site.slot for site in sites if not site.is_preview),
            templates=tuple(site.slot for site in sites if site.is_preview),
        )

    def _builds(self, job: gitjobs.GitJob) -> bool:
        site = self.site_of(job)
        return site is not None and site.build is not None and self.builder is not None

    def site_of(self, job: gitjobs.GitJob) -> SiteSpec | None:
        """The declared site a job deploys (its build: comes from the deploy.yaml in force now)."""
        if job.trigger == "api" and job.template is None:
            site = self.manifest().fixed_sites().get(job.slot)
            return site if site is not None and repo_key(site.repo.text) == repo_key(job.repo) else None
        for site in self.manifest().sites:
            if (site.slot == job.template) if job.template else (site.slot == job.slot and not site.is_preview):
                return site
        return None

    def run_job(self, job: gitjobs.GitJob) -> None:
        """Fetch, read the commit's tree like a ZIP (or build it), then hand it to the core pipeline."""
        # A hosted push deployed from its pre-receive hook: its objects are still in quarantine.
        with self.source.reading_incoming(Path(job.objects) if job.objects else None):
            site = self.site_of(job)
            if site is not None and site.build is not None and self.builder is not None:
                self.run_build(job, site)
            else:
                self._run_files(job)

    def _run_files(self, job: gitjobs.GitJob) -> None:
        incoming: Path | None = None
        try:
            repo = parse_repo_url(job.repo)
            commit = self._commit(job, repo)
            if self._unchanged(job, repo, commit):
                return
            git_dir = self.source.mirror_path(repo)
            listing = self.trees.list_tree(git_dir, commit, job.path, self.deployer.archive_limits())
            incoming = releases.incoming_dir(self.settings.releases_dir)
            # Held while linking cached blobs, so garbage collection never removes one meanwhile.
            with self.deployer.artifacts.using():
                copied = self.trees.write_tree(git_dir, listing, incoming)
        except DrophostError as exc:
            if exc.details.get("limit") == "max_repository_bytes":
                self._record_refused_head(job)
            self._fail(job, exc.message, incoming)
            return
        except Exception:  # recorded as failed; details go to the log only
            log.exception("git deployment %s failed", job.deployment_id)
            self._fail(job, "internal error while reading the repository", incoming)
            return
        with self.pool.connection() as conn:
            managed = gitjobs.is_managed(conn, job.slot)
        if not managed and job.trigger != "api":
            self._fail(job, "cancelled: the slot is no longer declared in deploy.yaml", incoming)
            return
        try:
            self.deployer.publish_tree(
                incoming,
                slot=job.slot,
                files=len(listing.files),
                size=listing.total_bytes,
                ttl_seconds=job.ttl_seconds,
                source="git",
                deployment_id=job.deployment_id,
                linked=copied == 0,
                site=self.site_rules(job.slot, job.branch),
                activate=job.activate,
                held=held_for_push(job),
            )
        except DrophostError as exc:
            log.warning("git deployment %s of slot %s failed: %s", job.deployment_id, job.slot, exc.message)
        try:
            self.source.fold_packs(repo)
        except Exception:  # housekeeping; the next deploy tries again
            log.exception("repacking the mirror of %s failed", repo.shown)

    def run_build(self, job: gitjobs.GitJob, site: SiteSpec) -> None:
        """Fetch, build in the sandbox, then publish the output unless it is what the slot serves."""
        assert site.build is not None and self.builder is not None
        build_log = BuildLog(self.settings.builds_dir, job.deployment_id, self.settings.build_log_bytes)
        incoming: Path | None = None
        try:
            repo = parse_repo_url(job.repo)
            if job.commit is None:
                build_log.line(f"DropHost: fetching {job.branch} of {repo.shown}")
            commit = self._commit(job, repo)
            if self._unchanged(job, repo, commit):
                build_log.line(f'DropHost: nothing under "{job.path or "/"}" changed since the live version: no build')
                build_log.close()
                return
            target = Target(
                deployment_id=job.deployment_id,
                slot=job.slot,
                branch=job.branch,
                commit=commit,
                path=job.path,
                preview=site.is_preview or site.is_pull_request,
            )
            incoming = releases.incoming_dir(self.settings.releases_dir)
            # Into the artifact store as the output is taken, not in publish_tree: each file is read
            # once, and the comparison with the live version finds most files the same blob without
            # reading them.
            copied = self.builder.build(
                site.build,
                target,
                self.source.mirror_path(repo),
                self.deployer.archive_limits(),
                incoming,
                build_log,
                self.deployer.artifacts,
            )
            # A draft is published even so: it was asked for its own release and permalink.
            if (job.activate or held_for_push(job)) and self._serves_already(job.slot, incoming):
                releases.remove(incoming)
                build_log.line("DropHost: the output is what the slot serves already: no new version")
                build_log.close()
                record.unchanged(self.deployer, job.deployment_id)
                return
        except DrophostError as exc:
            tail = build_log.tail_text()
            build_log.close()
            self._fail(job, f"{exc.message}\n{tail}" if tail else exc.message, incoming)
            return
        except Exception:  # recorded as failed; details go to the log only
            build_log.line("DropHost: internal error while building")
            build_log.close()
            log.exception("build of deployment %s failed", job.deployment_id)
            self._fail(job, "internal error while building", incoming)
            return
        with self.pool.connection() as conn:
            managed = gitjobs.is_managed(conn, job.slot)
        if not managed and job.trigger != "api":
            build_log.close()
            self._fail(job, "cancelled: the slot is no longer declared in deploy.yaml", incoming)
            return
        try:
            published = self.deployer.publish_tree(
                incoming,
                slot=job.slot,
                files=copied.files,
                size=copied.size,
                ttl_seconds=job.ttl_seconds,
                source="git",
                deployment_id=job.deployment_id,
                linked=True,
                site=self.site_rules(job.slot, job.branch),
                activate=job.activate,
                held=held_for_push(job),
            )
            if held_for_push(job):
                build_log.line("DropHost: ready; it goes live once git has moved the pushed branch")
            elif published["status"] == "draft":
                build_log.line(f"DropHost: kept as a draft, not live; promote deployment {job.deployment_id}")
            else:
                build_log.line(f"DropHost: live at {self.settings.site_base_url}/d/{job.slot}/")
        except DrophostError as exc:
            build_log.line(f"DropHost: {exc.message}")
            log.warning("build deployment %s failed: %s", job.deployment_id, exc.message)
        finally:
            build_log.close()

    def _commit(self, job: gitjobs.GitJob, repo: RepoUrl) -> str:
        """The commit to deploy (a pushed one, an annotated tag peeled, or the ref's head fetched now),
        recorded on the deployment."""
        if job.commit is not None:
            commit = self.source.peel(self.source.mirror_path(repo), job.commit)
        else:
            commit = self.source.fetch(repo, job.branch, ref=job.ref)
        record.commit_known(self.deployer, job.deployment_id, commit)
        return commit

    def _unchanged(self, job: gitjobs.GitJob, repo: RepoUrl, commit: str) -> bool:
        """A push touching nothing under the site's path: recorded 'unchanged', nothing listed, written or built.

        Compared by tree id (git already knows it: one rev-parse), with the commit the slot serves,
        when that came from the same repository and path and is still in our copy of it.
        """
        if job.trigger not in SKIP_UNCHANGED_TRIGGERS:
            return False
        with self.pool.connection() as conn:
            live = gitjobs.live_git_source(conn, job.slot)
        if live is None or repo_key(live["repo"]) != repo_key(job.repo) or live["path"] != job.path:
            return False
        if live["commit_sha"] != commit:
            git_dir = self.source.mirror_path(repo)
            pushed = self.source.tree_id(git_dir, commit, job.path)
            if pushed is None or pushed != self.source.tree_id(git_dir, live["commit_sha"], job.path):
                return False
        record.unchanged(self.deployer, job.deployment_id)
        log.info("git deployment %s of slot %s: nothing under its path changed", job.deployment_id, job.slot)
        return True

    def record_outcome(self, job: gitjobs.GitJob) -> None:
        """The audit log's second row of a git deploy: how it ended, named after whoever queued it."""
        try:
            with self.pool.connection() as conn:
                row = deployments.get_deployment(conn, job.deployment_id)
                if row is None:
                    return
                actor = audit.queued_by(conn, job.slot, job.deployment_id) or job.pusher or job.trigger or "git"
                commit = f" commit {row['commit_sha'][:12]}" if row["commit_sha"] else ""
                detail = f"deployment {job.deployment_id} of {strip_credentials(job.repo)} {job.branch}{commit}"
                if row["error"]:
                    detail += f": {row['error']}"
                audit.record(
                    conn, actor=actor, action="git_deploy_result", target=job.slot, result=row["status"], detail=detail
                )
        except Exception:  # the deploy itself is recorded; a missing audit row must not stop the worker
            log.exception("could not write the audit log entry for deployment %s", job.deployment_id)

    def _serves_already(self, slot: str, incoming: Path) -> bool:
        with self.pool.connection() as conn:
            row = slots.get_slot(conn, slot)
        if row is None or row["status"] != "live" or row["deployment_id"] is None:
            return False
        live = releases.release_dir(self.settings.releases_dir, slot, int(row["deployment_id"]))
        return live.is_dir() and same_files(live, incoming)

    def _record_refused_head(self, job: gitjobs.GitJob) -> None:
        """A fetch stopped at the size cap got no commit: ask the remote which one it was, so polling
        does not fetch the same oversized commit again (a failed commit is not retried)."""
        try:
            head = self.source.remote_head(parse_repo_url(job.repo), job.branch, ref=job.ref)
        except DrophostError:
            return
        if head is not None:
            with self.pool.connection() as conn:
                gitjobs.set_commit(conn, job.deployment_id, head)

    def _fail(self, job: gitjobs.GitJob, message: str, incoming: Path | None) -> None:
        if incoming is not None:
            releases.remove(incoming)
        record.deploy_failed(self.deployer, job.deployment_id, message)
        log.warning("git deployment %s of slot %s failed: %s", job.deployment_id, job.slot, message)

"""GitOps: apply deploy.yaml, turn pushes into queued deploys, and run the queue in the background."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import (
    ConflictError,
    DrophostError,
    ForbiddenError,
    UnauthorizedError,
    ValidationError,
)
from drophost.gitops import webhooks
from drophost.gitops.hosted import HostedRepos
from drophost.gitops.manifest import Manifest, SiteSpec, load_file, secret_problems
from drophost.gitops.mirror import GitSource
from drophost.gitops.plan import ADD, CHANGE, DEPLOY, REMOVE, Plan, plan
from drophost.gitops.repourls import check_branch, check_repo_path, parse_repo_url, repo_key, strip_credentials
from drophost.gitops.tree import Trees
from drophost.names import parse_ttl, validate_slot
from drophost.pipeline import releases
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import gitjobs
from drophost.store.groupcommit import GroupCommit
from drophost.store.rows import Conn

log = logging.getLogger(__name__)
WORKERS = 2
# A deploy queued behind a running one of its slot waits until pushes have stopped coming for
# SETTLE_SECONDS (at most MAX_SETTLE_SECONDS after the first of them): a burst of deliveries ends
# in one more deploy of the newest commit. A push to a slot with nothing running starts at once.
SETTLE_SECONDS = 0.5
MAX_SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class Push:
    """A verified push delivery: the (site, branch) pairs it deploys, and its id against replays."""

    provider: str
    delivery_id: str | None
    deploys: tuple[tuple[SiteSpec, str], ...]
    pusher: str | None


class GitOps:
    def __init__(self, settings: Settings, deployer: Deployer, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.deployer = deployer
        self.pool: ConnectionPool[Any] = deployer.pool
        self.pushes: GroupCommit[Push, list[gitjobs.Queued]] = GroupCommit(self.pool, self._record_pushes)
        self.environ = environ
        self.source = GitSource(settings)
        self.trees = Trees(self.source)
        self.hosted = HostedRepos(settings, self.source)
        self.manifest = Manifest()
        self.problems: list[str] = []
        self._apply_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._removals: list[str] = []
        self._removals_lock = threading.Lock()

    # -- deploy.yaml -------------------------------------------------------------------------------
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
                log.error("deploy.yaml: %s (webhooks for this site are refused)", problem)
            for name in sorted(manifest.hosted_names()):
                self.hosted.ensure(name)
            queued: list[int] = []
            for change in result.of(REMOVE):
                self._take_offline(change.slot)
            for change in result.of(ADD, CHANGE, DEPLOY):
                site = change.site
                assert site is not None
                with self.pool.connection() as conn:
                    gitjobs.upsert_managed(
                        conn, slot=site.slot, repo=site.repo.text, branch=site.branch, path=site.path, template=None
                    )
                if site.repo.is_hosted and not self.hosted.has_branch(site.repo, site.branch):
                    continue  # deployed by the first push
                queued.append(self.enqueue(site, site.branch, trigger="config", pusher=None))
        return {"changes": result.to_json(), "queued": queued, "errors": self.problems}

    def reload(self) -> dict[str, Any]:
        """Read deploy.yaml again (an invalid file changes nothing) and apply it."""
        return self.apply(self.load())

    def _take_offline(self, slot: str) -> None:
        with self.pool.connection() as conn:
            gitjobs.cancel_queued(conn, slot, "cancelled: the slot is no longer declared in deploy.yaml")
            gitjobs.forget_managed(conn, slot)
        try:
            self.deployer.take_offline(slot)
        except DrophostError as exc:
            log.info("slot %s was not taken offline: %s", slot, exc.message)

    # -- queueing ----------------------------------------------------------------------------------
    def enqueue(self, site: SiteSpec, branch: str, *, trigger: str, pusher: str | None) -> int:
        with self.pool.connection() as conn, conn.transaction():
            queued = self._queue(conn, site, branch, trigger=trigger, pusher=pusher)
        if queued.new:
            self._wake.set()
        return queued.deployment_id

    def _queue(self, conn: Conn, site: SiteSpec, branch: str, *, trigger: str, pusher: str | None) -> gitjobs.Queued:
        slot = site.slot_for(branch)
        template = site.slot if site.is_preview else None
        if template:
            gitjobs.upsert_managed(
                conn, slot=slot, repo=site.repo.text, branch=branch, path=site.path, template=template
            )
        return gitjobs.queue_deploy(
            conn,
            slot=slot,
            repo=site.repo.text,
            shown_repo=strip_credentials(site.repo.text),
            branch=branch,
            path=site.path,
            template=template,
            trigger=trigger,
            pusher=pusher,
            ttl_seconds=site.ttl_seconds,
            settle=SETTLE_SECONDS,
            max_settle=MAX_SETTLE_SECONDS,
        )

    def deploy_from_api(self, body: Mapping[str, Any]) -> int:
        """POST /api/deployments with JSON: a declared or allowed repository, one branch, into one slot."""
        unknown = set(body) - {"repo", "branch", "path", "slot", "ttl"}
        if unknown:
            raise ValidationError(f"unknown field {sorted(unknown)[0]!r}; use repo, branch, path and slot")
        repo = parse_repo_url(body.get("repo"))  # type: ignore[arg-type]
        branch = check_branch(body.get("branch") or "main")
        path = check_repo_path(body.get("path"))
        raw_slot = body.get("slot")
        if not isinstance(raw_slot, str):
            raise ValidationError("slot is required", field="slot")
        slot = validate_slot(raw_slot)
        manifest = self.manifest
        if not manifest.allows(repo.text):
            raise ForbiddenError(
                f"{repo.shown} is not declared in deploy.yaml and matches none of its sources.allow patterns",
                field="repo",
            )
        declared = manifest.fixed_sites().get(slot)
        if declared is not None and (repo_key(declared.repo.text) != repo_key(repo.text) or declared.branch != branch):
            raise ConflictError(
                f'slot "{slot}" is declared in deploy.yaml for {declared.repo.shown} branch {declared.branch}',
                field="slot",
            )
        raw_ttl = body.get("ttl")
        if raw_ttl is not None and (isinstance(raw_ttl, bool) or not isinstance(raw_ttl, (str, int))):
            raise ValidationError("ttl must be seconds or a number with s, m, h, d or w", field="ttl")
        ttl = parse_ttl(raw_ttl, maximum=self.settings.max_ttl_seconds)
        self.source.check_ref(branch)
        site = SiteSpec(slot=slot, repo=repo, branches=(branch,), path=path, ttl_seconds=ttl)
        return self.enqueue(site, branch, trigger="api", pusher=None)

    # -- webhooks ----------------------------------------------------------------------------------
    def webhook(self, provider_name: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        p = webhooks.provider(provider_name)
        manifest = self.manifest
        secrets = self.site_secrets(manifest)
        if not any(secrets.values()):
            raise ForbiddenError("no site in deploy.yaml has a webhook secret; set webhook_secret_env for the site")
        verified = webhooks.verified_secrets(p, headers, body, sorted({s for s in secrets.values() if s}))
        event = webhooks.parse_event(p, headers, body)
        if event.kind == "ping":
            return 200, {"ok": "ping received"}
        if event.kind == "ignored":
            return 202, {"ignored": event.reason}
        sites = [site for url in dict.fromkeys(event.repo_urls) for site in manifest.sites_for_repo(url)]
        sites = list(dict.fromkeys(sites))
        if not sites:
            return 202, {"ignored": "no site in deploy.yaml deploys this repository"}
        signed = [site for site in sites if secrets.get(site) in verified]
        if not signed:
            unset = [site for site in sites if not secrets.get(site)]
            if unset:
                raise ForbiddenError(
                    f'no webhook secret is configured for slot "{unset[0].slot}"; set its webhook_secret_env'
                )
            raise UnauthorizedError("the signature does not match the webhook secret of this repository's sites")
        return self._act_on_push(p, headers, event, signed)

    def site_secrets(self, manifest: Manifest) -> dict[SiteSpec, str | None]:
        return {
            site: self.environ.get(site.webhook_secret_env) if site.webhook_secret_env else None
            for site in manifest.sites
        }

    def _act_on_push(
        self, p: webhooks.Provider, headers: Mapping[str, str], event: webhooks.Event, sites: list[SiteSpec]
    ) -> tuple[int, dict[str, Any]]:
        delivery = webhooks.delivery_id(p, headers)
        wanted = [(site, update) for update in event.updates for site in sites if site.wants(update.branch)]
        if not wanted:
            branches = ", ".join(u.branch for u in event.updates)[:200]
            return 202, {"ignored": f"no site in deploy.yaml deploys branch {branches}"}
        removed = [site.slot_for(update.branch) for site, update in wanted if update.deleted and site.is_preview]
        deploys = tuple((site, update.branch) for site, update in wanted if not update.deleted)
        # Concurrent deliveries share one transaction; the answer waits for its durable commit.
        outcome = self.pushes.run(Push(p.name, delivery, deploys, event.pusher))
        if any(q.new for q in outcome):
            # Committed, so the workers can see it. A push absorbed by a deploy already waiting
            # wakes no one: during a burst, that is every delivery but the first ones.
            self._wake.set()
        queued = [q.deployment_id for q in outcome]
        if removed:
            with self._removals_lock:
                self._removals.extend(removed)
            self._wake.set()
        if not queued and not removed:
            return 202, {"ignored": "the branch was deleted; only preview slots are removed with their branch"}
        return 202, {"queued": queued, "removed": removed}

    def _record_pushes(self, conn: Conn, pushes: Sequence[Push]) -> list[list[gitjobs.Queued] | BaseException]:
        """Record concurrent deliveries at once: replays do nothing, and each wanted slot is queued once."""
        fresh = gitjobs.record_deliveries(conn, [(p.provider, p.delivery_id) for p in pushes if p.delivery_id])
        accepted: list[bool] = []
        pushers: dict[tuple[SiteSpec, str], str | None] = {}
        for push in pushes:
            key = (push.provider, push.delivery_id or "")
            accepted.append(push.delivery_id is None or key in fresh)
            fresh.discard(key)  # the same id twice in one batch: the second one is a replay
            if accepted[-1]:
                for target in push.deploys:
                    pushers[target] = push.pusher or pushers.get(target)
        queued = {
            (site, branch): self._queue(conn, site, branch, trigger="webhook", pusher=pusher)
            for (site, branch), pusher in pushers.items()
        }
        outcomes: list[list[gitjobs.Queued] | BaseException] = []
        remembered: list[tuple[str, str, list[int]]] = []
        for push, new in zip(pushes, accepted, strict=True):
            if not new:
                outcomes.append(
                    ConflictError(f"delivery {push.delivery_id} was already received; nothing was done again")
                )
                continue
            mine = [queued[target] for target in push.deploys]
            if push.delivery_id:
                remembered.append((push.provider, push.delivery_id, [q.deployment_id for q in mine]))
            outcomes.append(mine)
        gitjobs.set_deliveries_deployments(conn, remembered)
        return outcomes

    # -- hosted repositories -----------------------------------------------------------------------
    def hosted_sites(self, name: str) -> list[SiteSpec]:
        return [site for site in self.manifest.sites if site.repo.hosted_name == name]

    def hosted_push(self, name: str, updates: list[tuple[str, str, str]], pusher: str | None) -> list[int]:
        """The post-receive hook's refs: queue a deploy per declared branch, remove deleted previews."""
        sites = self.hosted_sites(name)
        queued = []
        for _old, new, ref in updates:
            if not ref.startswith("refs/heads/"):
                continue
            branch = ref[len("refs/heads/") :]
            for site in sites:
                if not site.wants(branch):
                    continue
                if new == webhooks.ZERO_SHA:
                    if site.is_preview:
                        self._remove_preview(site.slot_for(branch))
                    continue
                queued.append(self.enqueue(site, branch, trigger="push", pusher=pusher))
        return queued

    def wait_for(self, deployment_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.pool.connection() as conn:
                rows = gitjobs.deployment_states(conn, deployment_ids)
            if all(r["state"] in ("ready", "failed") for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    # -- background work ---------------------------------------------------------------------------
    def requeue(self, interrupted: list[int]) -> None:
        """Queue again the git deploys a restart interrupted (before deploy.yaml is applied)."""
        with self.pool.connection() as conn:
            for job in gitjobs.jobs_of(conn, interrupted):
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
                )

    def start(self) -> None:
        """Start the workers and the poller."""
        self.trees.prune_blobs()
        for number in range(WORKERS):
            thread = threading.Thread(target=self._work_forever, name=f"drophost-git-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        poller = threading.Thread(target=self._poll_forever, name="drophost-poll", daemon=True)
        poller.start()
        self._threads.append(poller)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.git_timeout + 30)
        self._threads.clear()

    def _work_forever(self) -> None:
        while not self._stop.is_set():
            try:
                did = self.work_once()
            except Exception:  # the worker must survive a database hiccup
                log.exception("git worker failed")
                did = False
            if not did:
                self._wake.wait(timeout=self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        # Until a settling deploy may start, or a second (the wake event cuts either short).
        try:
            with self.pool.connection() as conn:
                due = gitjobs.seconds_to_next_job(conn)
        except Exception:  # the worker must survive a database hiccup
            log.exception("git worker failed")
            return 1.0
        return 1.0 if due is None else min(1.0, max(due, 0.01))

    def work_once(self) -> bool:
        with self._removals_lock:
            removal = self._removals.pop(0) if self._removals else None
        if removal is not None:
            self._remove_preview(removal)
            return True
        with self.pool.connection() as conn:
            job = gitjobs.claim_next(conn)
        if job is None:
            return False
        self.run_job(job)
        return True

    def _remove_preview(self, slot: str) -> None:
        log.info("branch deleted: taking preview slot %s offline", slot)
        self._take_offline(slot)

    def run_job(self, job: gitjobs.GitJob) -> None:
        """Fetch, read the commit's tree like a ZIP, then hand it to the core pipeline."""
        incoming: Path | None = None
        try:
            repo = parse_repo_url(job.repo)
            commit = self.source.fetch(repo, job.branch)
            with self.pool.connection() as conn:
                gitjobs.set_commit(conn, job.deployment_id, commit)
            git_dir = self.source.mirror_path(repo)
            tree = self.trees.list_tree(git_dir, commit, job.path, self.deployer.archive_limits())
            incoming = releases.incoming_dir(self.settings.releases_dir)
            # Held while linking cached blobs, so garbage collection never removes one meanwhile.
            with self.deployer.artifacts.using():
                copied = self.trees.write_tree(git_dir, tree, incoming)
        except DrophostError as exc:
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
                files=len(tree.files),
                size=tree.total_bytes,
                ttl_seconds=job.ttl_seconds,
                source="git",
                deployment_id=job.deployment_id,
                linked=copied == 0,
            )
        except DrophostError as exc:
            log.warning("git deployment %s of slot %s failed: %s", job.deployment_id, job.slot, exc.message)
        try:
            self.source.fold_packs(repo)
        except Exception:  # housekeeping; the next deploy tries again
            log.exception("repacking the mirror of %s failed", repo.shown)

    def _fail(self, job: gitjobs.GitJob, message: str, incoming: Path | None) -> None:
        if incoming is not None:
            releases.remove(incoming)
        with self.pool.connection() as conn:
            gitjobs.fail_job(conn, job.deployment_id, message)
        log.warning("git deployment %s of slot %s failed: %s", job.deployment_id, job.slot, message)

    # -- polling -----------------------------------------------------------------------------------
    def poll_interval(self) -> float:
        declared = self.manifest.poll_interval
        return float(declared) if declared is not None else self.settings.poll_interval

    def _poll_forever(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(timeout=0.5):
            interval = self.poll_interval()
            if interval <= 0 or time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # the poller must survive
                log.exception("polling failed")

    def poll_once(self) -> list[int]:
        """Deploy what webhooks missed: new heads of declared branches, new or deleted preview branches."""
        queued: list[int] = []
        by_repo: dict[str, list[SiteSpec]] = {}
        for site in self.manifest.sites:
            by_repo.setdefault(repo_key(site.repo.text), []).append(site)
        for sites in by_repo.values():
            try:
                heads = self.source.remote_heads(sites[0].repo)
            except DrophostError as exc:
                log.info("polling %s: %s", sites[0].repo.shown, exc.message)
                continue
            for site in sites:
                queued += self._poll_site(site, heads)
        return queued

    def _poll_site(self, site: SiteSpec, heads: dict[str, str]) -> list[int]:
        branches = [b for b in heads if site.wants(b)] if site.is_preview else [site.branch]
        queued = []
        for branch in branches:
            head = heads.get(branch)
            if head is None:
                continue
            slot = site.slot_for(branch)
            with self.pool.connection() as conn:
                if gitjobs.last_commit(conn, slot) == head or gitjobs.has_pending(conn, slot):
                    continue
            queued.append(self.enqueue(site, branch, trigger="poll", pusher=None))
        if site.is_preview:
            with self.pool.connection() as conn:
                previews = [r for r in gitjobs.managed_slots(conn) if r["template"] == site.slot]
            for row in previews:
                if repo_key(row["repo"]) == repo_key(site.repo.text) and row["branch"] not in heads:
                    self._remove_preview(row["slot"])
        return queued

"""Pushes in, deploys queued: webhooks, the API's repo-URL deploys, hosted pushes, each slot queued once.

A push only records what to deploy; the worker (worker.py) does the deploying. Each call acts on
the deploy.yaml it is given (the one applied last), read once per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import ConflictError, ForbiddenError, UnauthorizedError, ValidationError
from drophost.gitops import refs, targets, webhooks
from drophost.gitops.manifest import Manifest, SiteSpec
from drophost.gitops.mirror import SHA, GitSource
from drophost.gitops.offline import remove_preview
from drophost.gitops.repourls import check_branch, check_repo_path, parse_repo_url, repo_key, strip_credentials
from drophost.gitops.targets import Target
from drophost.names import parse_deploy_ttl, validate_slot
from drophost.pipeline import record
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import audit, gitjobs
from drophost.store.groupcommit import GroupCommit
from drophost.store.rows import Conn

# A deploy queued behind a running one of its slot waits until pushes have stopped coming for
# SETTLE_SECONDS (at most MAX_SETTLE_SECONDS after the first of them): a burst of deliveries ends
# in one more deploy of the newest commit. A push to a slot with nothing running starts at once.
SETTLE_SECONDS = 0.5
MAX_SETTLE_SECONDS = 10.0
# Who the audit log names for a queued git deploy, by trigger; a push names its pusher (the token's
# user), and an API deploy its caller (the API's guard records the request itself too). The worker
# names the same actor when the deploy ends (worker.record_outcome).
ACTORS: dict[str, str | None] = {"poll": "poll", "config": "deploy.yaml", "api": None}
log = logging.getLogger(__name__)
FINAL_STATES = ("ready", "failed", "unchanged")


def push_timeouts(settings: Settings) -> tuple[float, float]:
    """How long a hosted push's deploy may wait for a worker (behind one whole build), and how long
    the pre-receive hook waits for its outcome in all (queued, then a fetch-free deploy or a build)."""
    queued = settings.build_max_timeout + 2 * settings.git_timeout
    return queued, queued + settings.build_max_timeout + 2 * settings.git_timeout + 60


@dataclass(frozen=True)
class Pinned:
    """A pushed commit (or tag) a pre-receive hook deploys, its objects still in git's quarantine folder."""

    commit: str
    objects: Path


@dataclass(frozen=True)
class Push:
    """A verified push or pull-request delivery: what it deploys, and its id against replays."""

    provider: str
    delivery_id: str | None
    deploys: tuple[Target, ...]
    pusher: str | None


class Intake:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool[Any],
        deployer: Deployer,
        source: GitSource,
        environ: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.deployer = deployer
        self.source = source
        self.environ = environ
        self.pushes: GroupCommit[Push, list[gitjobs.Queued]] = GroupCommit(pool, self._record_pushes)
        # Set when there is work for the workers: a new queued deploy, or a preview to remove.
        self.wake = threading.Event()
        self._removals: list[str] = []
        self._removals_lock = threading.Lock()

    # -- queueing ----------------------------------------------------------------------------------
    def enqueue(
        self,
        site: SiteSpec,
        branch: str,
        *,
        trigger: str,
        pusher: str | None,
        actor: str | None = None,
        activate: bool = True,
    ) -> int:
        target = targets.branch_target(site, branch)
        return self.enqueue_target(target, trigger=trigger, pusher=pusher, actor=actor, activate=activate)

    def enqueue_target(
        self, target: Target, *, trigger: str, pusher: str | None, actor: str | None = None, activate: bool = True
    ) -> int:
        with self.pool.connection() as conn, conn.transaction():
            actor = actor or (ACTORS[trigger] if trigger in ACTORS else pusher or trigger)
            queued = self._queue(conn, target, trigger=trigger, pusher=pusher, actor=actor, activate=activate)
        if queued.new:
            self.wake.set()
        return queued.deployment_id

    def _queue(
        self,
        conn: Conn,
        target: Target,
        *,
        trigger: str,
        pusher: str | None,
        actor: str | None,
        pinned: Pinned | None = None,
        activate: bool = True,
    ) -> gitjobs.Queued:
        """Queue one deploy; `actor` (None: nobody to name, the API's guard records the request) is audited."""
        site, slot, branch, template = target.site, target.slot, target.branch, target.template
        if template:
            gitjobs.upsert_managed(
                conn, slot=slot, repo=site.repo.text, branch=branch, path=site.path, template=template
            )
        if pinned is not None:
            queued = gitjobs.Queued(
                gitjobs.queue_pinned(
                    conn,
                    slot=slot,
                    repo=site.repo.text,
                    branch=branch,
                    ref=target.ref,
                    path=site.path,
                    template=template,
                    pusher=pusher,
                    ttl_seconds=site.ttl_seconds,
                    commit=pinned.commit,
                    objects=str(pinned.objects),
                    activate=activate,
                ),
                new=True,
            )
        else:
            queued = gitjobs.queue_deploy(
                conn,
                slot=slot,
                repo=site.repo.text,
                shown_repo=strip_credentials(site.repo.text),
                branch=branch,
                ref=target.ref,
                path=site.path,
                template=template,
                trigger=trigger,
                pusher=pusher,
                ttl_seconds=site.ttl_seconds,
                settle=SETTLE_SECONDS,
                max_settle=MAX_SETTLE_SECONDS,
                activate=activate,
            )
        if actor is not None:
            verb = "queued" if queued.new else "joined the queued"
            if not activate and pinned is None:  # a push's held draft is its deploy: it goes live once landed
                verb += " draft"
            result = f"{verb} deployment {queued.deployment_id} of {strip_credentials(site.repo.text)} {branch}"
            audit.record(conn, actor=actor, action="git_deploy", target=slot, result=result)
        return queued

    def next_removal(self) -> str | None:
        """A preview slot whose branch a webhook reported deleted, for a worker to take offline."""
        with self._removals_lock:
            return self._removals.pop(0) if self._removals else None

    def deploy_from_api(self, manifest: Manifest, body: Mapping[str, Any], actor: str | None = None) -> int:
        """POST /api/deployments with JSON: a declared or allowed repository, one branch, into one slot
        (`"activate": false`: as a draft, the live site unchanged until a promote)."""
        unknown = set(body) - {"repo", "branch", "path", "slot", "ttl", "activate"}
        if unknown:
            raise ValidationError(f"unknown field {sorted(unknown)[0]!r}; use repo, branch, path and slot")
        repo = parse_repo_url(body.get("repo"))  # type: ignore[arg-type]
        branch = check_branch(body.get("branch", "main"))  # only a missing branch means main
        path = check_repo_path(body.get("path"))
        raw_slot = body.get("slot")
        if not isinstance(raw_slot, str):
            raise ValidationError("slot is required", field="slot")
        slot = validate_slot(raw_slot)
        if not manifest.allows(repo.text):
            raise ForbiddenError(
                f"{repo.shown} is not declared in deploy.yaml and matches none of its sources.allow patterns",
                field="repo",
            )
        declared = manifest.fixed_sites().get(slot)
        if declared is not None and (repo_key(declared.repo.text) != repo_key(repo.text) or declared.branch != branch):
            raise ConflictError(
                f'slot "{slot}" is declared in deploy.yaml for {declared.repo.shown} {declared.follows}',
                field="slot",
            )
        raw_ttl = body.get("ttl")
        if raw_ttl is not None and (isinstance(raw_ttl, bool) or not isinstance(raw_ttl, (str, int))):
            raise ValidationError("ttl must be seconds or a number with s, m, h, d or w", field="ttl")
        ttl = parse_deploy_ttl(raw_ttl, maximum=self.settings.max_ttl_seconds)
        activate = body.get("activate", True)
        if not isinstance(activate, bool):
            raise ValidationError("activate must be true or false", field="activate")
        self.source.check_ref(branch)
        site = SiteSpec(slot=slot, repo=repo, branches=(branch,), path=path, ttl_seconds=ttl)
        return self.enqueue(site, branch, trigger="api", pusher=None, actor=actor, activate=activate)

    # -- webhooks ----------------------------------------------------------------------------------
    def webhook(
        self, manifest: Manifest, provider_name: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        p = webhooks.provider(provider_name)
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
        if event.kind == "pull_request":
            return self._act_on_pull_request(p, headers, event, signed)
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
        decision = targets.for_push(event, sites, self.tags_given)
        for reason in decision.refused:
            log.info("webhook %s: %s", p.name, reason)
        if not decision.matched:
            names = ", ".join(u.branch for u in event.updates)[:200]
            if all(u.tag for u in event.updates):
                return 202, {"ignored": f"no site in deploy.yaml follows tag {names}"}
            return 202, {"ignored": f"no site in deploy.yaml deploys branch {names}"}
        removed = list(decision.removed)
        # Concurrent deliveries share one transaction; the answer waits for its durable commit.
        outcome = self.pushes.run(Push(p.name, delivery, decision.deploys, event.pusher))
        if any(q.new for q in outcome):
            # Committed, so the workers can see it. A push absorbed by a deploy already waiting
            # wakes no one: during a burst, that is every delivery but the first ones.
            self.wake.set()
        queued = [q.deployment_id for q in outcome]
        if removed:
            with self._removals_lock:
                self._removals.extend(removed)
            self.wake.set()
        if not queued and not removed:
            if decision.refused:
                return 202, {"ignored": "; ".join(decision.refused)[:500]}
            return 202, {"ignored": "the branch was deleted; only preview slots are removed with their branch"}
        return 202, {"queued": queued, "removed": removed}

    def tags_given(self, slot: str) -> list[str]:
        """The tag refs a slot's git jobs were given: a tag older than the newest of them is not deployed."""
        with self.pool.connection() as conn:
            return gitjobs.tag_refs(conn, slot)

    def _act_on_pull_request(
        self, p: webhooks.Provider, headers: Mapping[str, str], event: webhooks.Event, sites: list[SiteSpec]
    ) -> tuple[int, dict[str, Any]]:
        pull = event.pull_request
        assert pull is not None
        decision = targets.for_pull_request(p.name, pull, sites)
        for reason in decision.refused:
            log.warning("webhook %s: refused: %s", p.name, reason)
        if not decision.matched:
            return 202, {"ignored": "no site in deploy.yaml previews pull requests of this repository"}
        queued: list[int] = []
        if decision.deploys:
            outcome = self.pushes.run(Push(p.name, webhooks.delivery_id(p, headers), decision.deploys, event.pusher))
            if any(q.new for q in outcome):
                self.wake.set()
            queued = [q.deployment_id for q in outcome]
        # Only previews that exist: closing a refused fork's pull request has nothing to take offline.
        with self.pool.connection() as conn:
            removed = [slot for slot in decision.removed if gitjobs.is_managed(conn, slot)]
        if removed:
            log.info("pull request #%s closed: taking %s offline", pull.number, ", ".join(removed))
            with self._removals_lock:
                self._removals.extend(removed)
            self.wake.set()
        answer: dict[str, Any] = {"queued": queued, "removed": removed}
        if decision.refused:
            answer["refused"] = list(decision.refused)
        return 202, answer

    def _record_pushes(self, conn: Conn, pushes: Sequence[Push]) -> list[list[gitjobs.Queued] | BaseException]:
        """Record concurrent deliveries at once: replays do nothing, and each wanted slot is queued once."""
        fresh = gitjobs.record_deliveries(conn, [(p.provider, p.delivery_id) for p in pushes if p.delivery_id])
        accepted: list[bool] = []
        pushers: dict[Target, str | None] = {}
        providers: dict[Target, str] = {}
        for push in pushes:
            key = (push.provider, push.delivery_id or "")
            accepted.append(push.delivery_id is None or key in fresh)
            fresh.discard(key)  # the same id twice in one batch: the second one is a replay
            if accepted[-1]:
                for target in push.deploys:
                    pushers[target] = push.pusher or pushers.get(target)
                    providers[target] = push.provider
        queued: dict[Target, gitjobs.Queued] = {}
        for target, pusher in pushers.items():
            tag = refs.tag_of(target.ref)
            # Checked again inside the transaction: a newer tag may have been queued meanwhile.
            if tag is not None and targets.older_than(target.site, tag, gitjobs.tag_refs(conn, target.slot)):
                continue
            queued[target] = self._queue(
                conn, target, trigger="webhook", pusher=pusher, actor=f"webhook:{providers[target]}"
            )
        outcomes: list[list[gitjobs.Queued] | BaseException] = []
        remembered: list[tuple[str, str, list[int]]] = []
        for push, new in zip(pushes, accepted, strict=True):
            if not new:
                outcomes.append(
                    ConflictError(f"delivery {push.delivery_id} was already received; nothing was done again")
                )
                continue
            mine = [queued[target] for target in push.deploys if target in queued]
            if push.delivery_id:
                remembered.append((push.provider, push.delivery_id, [q.deployment_id for q in mine]))
            outcomes.append(mine)
        gitjobs.set_deliveries_deployments(conn, remembered)
        return outcomes

    # -- hosted repositories -----------------------------------------------------------------------
    def hosted_push(
        self, manifest: Manifest, name: str, updates: list[tuple[str, str, str]], pusher: str | None
    ) -> list[int]:
        """The post-receive hook's refs: queue a deploy per declared branch, remove deleted previews."""
        sites = [site for site in manifest.sites if site.repo.hosted_name == name]
        queued = []
        pushed_tags = [tag for _old, new, ref in updates if (tag := refs.tag_of(ref)) and new != webhooks.ZERO_SHA]
        for site in sites:
            newest = refs.newest(tag for tag in pushed_tags if site.wants_tag(tag))
            if newest is not None:
                queued += self.queue_tag(site, newest, trigger="push", pusher=pusher)
        for _old, new, ref in updates:
            if not ref.startswith("refs/heads/"):
                continue
            branch = ref[len("refs/heads/") :]
            for site in sites:
                if not site.wants(branch):
                    continue
                if new == webhooks.ZERO_SHA:
                    if site.is_preview:
                        remove_preview(self.pool, self.deployer, site.slot_for(branch), pusher or "push")
                    continue
                queued.append(self.enqueue(site, branch, trigger="push", pusher=pusher))
        return queued

    def queue_tag(self, site: SiteSpec, tag: str, *, trigger: str, pusher: str | None) -> list[int]:
        """Queue a deploy of `tag` for a site following tags, unless the slot was given a newer one."""
        newer = targets.older_than(site, tag, self.tags_given(site.slot))
        if newer is not None:
            log.info("slot %s stays on tag %s: %s is older", site.slot, newer, tag)
            return []
        return [self.enqueue_target(targets.tag_target(site, tag), trigger=trigger, pusher=pusher)]

    def newest_tag(self, site: SiteSpec) -> tuple[str, str] | None:
        """The newest tag matching the site's pattern now, and its commit (None: no tag matches)."""
        assert site.tags is not None
        found = self.source.remote_tags(site.repo)
        newest = refs.newest(refs.matching_tags(found, site.tags))
        return None if newest is None else (newest, found[newest])

    def hosted_paths(self, manifest: Manifest, name: str, updates: list[tuple[str, str, str]]) -> dict[str, list[str]]:
        """Which folder of each pushed branch pre-receive checks against the caps: the path of each
        site that follows it (a build site's whole commit: it is all written out), else the whole
        tree. (A pushed tag's deploy applies the same caps itself.)"""
        sites = [site for site in manifest.sites if site.repo.hosted_name == name]
        paths: dict[str, list[str]] = {}
        for _old, _new, ref in updates:
            if ref.startswith("refs/heads/"):
                wanted = [site for site in sites if site.wants(ref[len("refs/heads/") :])]
                paths[ref] = sorted({"" if site.build is not None else site.path for site in wanted}) or [""]
        return paths

    def hosted_pre_receive(
        self, manifest: Manifest, name: str, updates: list[tuple[str, str, str]], pusher: str | None, objects: Path
    ) -> list[int]:
        """The pre-receive hook's refs: queue a draft deploy of each pushed commit a declared site
        follows (for a site following tags, the newest pushed tag, unless the slot has a newer one),
        read from git's quarantine folder, before any ref moves (settle_push waits for them)."""
        sites = [site for site in manifest.sites if site.repo.hosted_name == name]
        wanted: list[tuple[Target, str]] = []
        pushed_tags = {
            tag: new
            for _old, new, ref in updates
            if (tag := refs.tag_of(ref)) and new != webhooks.ZERO_SHA and SHA.fullmatch(new)
        }
        for site in sites:
            newest = refs.newest(tag for tag in pushed_tags if site.wants_tag(tag))
            if newest is None:
                continue
            older = targets.older_than(site, newest, self.tags_given(site.slot))
            if older is not None:
                log.info("slot %s stays on tag %s: %s is older", site.slot, older, newest)
                continue
            self.source.check_full_ref(refs.tag_ref(newest))
            wanted.append((targets.tag_target(site, newest), pushed_tags[newest]))
        for _old, new, ref in updates:
            if not ref.startswith("refs/heads/") or new == webhooks.ZERO_SHA or not SHA.fullmatch(new):
                continue  # a deleted branch: post-receive takes its preview offline once it is gone
            branch = ref[len("refs/heads/") :]
            followers = [site for site in sites if site.wants(branch)]
            if followers:  # a branch no site follows is stored as git accepts it
                self.source.check_ref(branch)
            wanted += [(targets.branch_target(site, branch), new) for site in followers]
        queued = []
        for target, new in wanted:
            with self.pool.connection() as conn, conn.transaction():
                pinned = Pinned(commit=new, objects=objects)
                actor = pusher or "push"
                # A draft: git may still refuse to move the ref (a racing push won), so it goes
                # live only from post-receive, once the branch holds this commit (landing.py).
                job = self._queue(
                    conn, target, trigger="push", pusher=pusher, actor=actor, pinned=pinned, activate=False
                )
            queued.append(job.deployment_id)
        if queued:
            self.wake.set()
        return queued

    def hosted_deletions(
        self, manifest: Manifest, name: str, updates: list[tuple[str, str, str]], pusher: str | None
    ) -> None:
        """The post-receive hook's deleted branches: their preview slots go offline."""
        sites = [site for site in manifest.sites if site.repo.hosted_name == name]
        for _old, new, ref in updates:
            if not ref.startswith("refs/heads/") or new != webhooks.ZERO_SHA:
                continue
            branch = ref[len("refs/heads/") :]
            for site in sites:
                if site.wants(branch) and site.is_preview:
                    remove_preview(self.pool, self.deployer, site.slot_for(branch), pusher or "push")

    def settle_push(self, deployment_ids: list[int]) -> list[dict[str, Any]]:
        """Wait for a pre-receive hook's deploys to end. One still queued past the queue timeout is
        cancelled (failed), so the push is refused rather than deployed after its hook gave up."""
        queue_timeout, timeout = push_timeouts(self.settings)
        started = time.monotonic()
        while True:
            with self.pool.connection() as conn:
                rows = gitjobs.deployment_states(conn, deployment_ids)
            waited = time.monotonic() - started
            if waited > queue_timeout:
                reason = f"the push waited more than {queue_timeout:g} seconds for a free worker; push again"
                queued = [r["id"] for r in rows if r["state"] == "queued"]
                if any([record.queued_given_up(self.deployer, i, reason) for i in queued]):
                    continue
            if all(r["state"] in FINAL_STATES for r in rows) or waited > timeout:
                return rows
            time.sleep(0.1)

    def wait_for(self, deployment_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.pool.connection() as conn:
                rows = gitjobs.deployment_states(conn, deployment_ids)
            if all(r["state"] in ("ready", "failed", "unchanged") for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

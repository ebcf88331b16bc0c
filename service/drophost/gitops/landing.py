"""A hosted push lands: git moved its refs, and the post-receive hook makes their drafts live.

pre-receive checked, built and sealed each pushed commit a site follows into a held draft
(intake.hosted_pre_receive), so a bad push is still refused before any ref moves. But git moves a
ref only after pre-receive exits, and only if it still holds the old value: of two pushes from the
same commit, the first hook to finish wins and the other's update fails. So a draft goes live
here, from post-receive (which git runs only for the refs it moved), under the slot's lock, and
only while the ref still holds its commit (a later push may have moved it on): the site never
serves a commit its branch never held.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from psycopg_pool import ConnectionPool

from drophost.errors import DrophostError
from drophost.gitops import refs, targets, webhooks
from drophost.gitops.intake import Intake
from drophost.gitops.manifest import Manifest, SiteSpec
from drophost.gitops.mirror import SHA, GitSource
from drophost.gitops.targets import Target
from drophost.pipeline.buildlog import BuildLog, log_path
from drophost.pipeline.deployer import Deployer
from drophost.settings import Settings
from drophost.store import audit, gitjobs
from drophost.store.rows import Conn

log = logging.getLogger(__name__)


def moved_targets(sites: Sequence[SiteSpec], updates: Sequence[tuple[str, str, str]]) -> list[tuple[Target, str]]:
    """What each moved ref deploys, with the object pushed to it: the branch of each site following
    it, and for a site following tags the newest tag pushed (pure; what pre-receive queued)."""
    pushed_tags = {
        tag: new
        for _old, new, ref in updates
        if (tag := refs.tag_of(ref)) and new != webhooks.ZERO_SHA and SHA.fullmatch(new)
    }
    moved: list[tuple[Target, str]] = []
    for site in sites:
        newest = refs.newest(tag for tag in pushed_tags if site.wants_tag(tag))
        if newest is not None:
            moved.append((targets.tag_target(site, newest), pushed_tags[newest]))
    for _old, new, ref in updates:
        if ref.startswith("refs/heads/") and new != webhooks.ZERO_SHA and SHA.fullmatch(new):
            branch = ref[len("refs/heads/") :]
            moved += [(targets.branch_target(site, branch), new) for site in sites if site.wants(branch)]
    return moved


class Landing:
    def __init__(
        self, settings: Settings, pool: ConnectionPool[Any], deployer: Deployer, source: GitSource, intake: Intake
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.deployer = deployer
        self.source = source
        self.intake = intake

    def land(
        self, manifest: Manifest, name: str, updates: Sequence[tuple[str, str, str]], pusher: str | None
    ) -> list[str]:
        """The post-receive hook's moved refs: each draft pre-receive made of them goes live. The
        push output's lines (where each site is live, or why it is not)."""
        sites = [site for site in manifest.sites if site.repo.hosted_name == name]
        messages = []
        landed = set()
        for target, pushed in moved_targets(sites, updates):
            if (target.slot, pushed) in landed:
                continue  # one site following two pushed branches: one draft of that commit
            landed.add((target.slot, pushed))
            line = self._land(target, pushed, pusher or "push")
            if line is not None:
                messages.append(line)
        return messages

    def _land(self, target: Target, pushed: str, actor: str) -> str | None:
        slot, repo = target.slot, target.site.repo
        stale = False
        with self.pool.connection() as conn:
            row = gitjobs.pushed_deployment(conn, slot, repo.text, target.branch, pushed)
            if row is not None and row["state"] == "unchanged":
                stale = gitjobs.activated_since(conn, slot, int(row["id"]))
        if row is None or row["state"] not in ("ready", "unchanged"):
            return None  # nothing was queued (an older tag), or pre-receive reported it already
        deployment_id = int(row["id"])
        if row["state"] == "unchanged":
            if not stale:
                return None
            # It was compared with what was live then; the slot has switched since (a push that
            # landed meanwhile): deploy the head again, compared with what is live now.
            queued = self.intake.enqueue_target(target, trigger="push", pusher=actor)
            return f"DropHost: {slot} changed while this push was checked: deploying it again (deployment {queued})"
        try:
            done = self.deployer.publish_draft(slot, deployment_id, refused=lambda: self._refused(target, pushed))
        except DrophostError as exc:
            self._record(actor, target, deployment_id, "failed", exc.message)
            return (
                f"DropHost: {slot} could not be made live: {exc.message}; the branch moved, what was live stays"
                " live (once the cause is fixed, push a new commit or deploy the branch: POST /api/deployments)"
            )
        except Exception:
            log.exception("making deployment %s of slot %s live failed", deployment_id, slot)
            self._record(actor, target, deployment_id, "failed", "internal error")
            return f"DropHost: {slot} could not be made live (internal error); promote deployment {deployment_id}"
        if done["status"] != "live":
            self._record(actor, target, deployment_id, "draft", done["error"])
            return f"DropHost: {slot} was not made live: {done['error']}"
        self._record(actor, target, deployment_id, "live", None)
        url = f"{self.settings.site_base_url}/d/{slot}/"
        if log_path(self.settings.builds_dir, deployment_id).exists():
            build_log = BuildLog(self.settings.builds_dir, deployment_id, self.settings.build_log_bytes)
            build_log.line(f"DropHost: live at {url}")
            build_log.close()
        return f"live at {url} (version {done['config_version']})"

    def catch_up(self, manifest: Manifest, *, queue: bool) -> list[int]:
        """Land what a post-receive never did (the service was down or unreachable, or stopped
        between making a draft live and recording it): for each hosted branch whose head is not what
        its slot serves, its held draft of that head goes live unless the slot switched since that
        push (a promote, rollback, upload or offline stands: the draft waits for a promote); else,
        with `queue` (at start), a deploy of the head is queued for a declared branch whose live slot
        came from git, if git never deployed that commit to it. Pushing again cannot: git sees the
        branch there already. The deployments landed or queued."""
        by_repo: dict[str, list[SiteSpec]] = {}
        for site in manifest.sites:
            if site.repo.is_hosted and site.tags is None and not site.is_pull_request:
                by_repo.setdefault(site.repo.text, []).append(site)
        done: list[int] = []
        for sites in by_repo.values():
            try:
                heads = self.source.remote_heads(sites[0].repo)
            except DrophostError as exc:
                log.info("catching up %s: %s", sites[0].repo.shown, exc.message)
                continue
            for site in sites:
                branches = [b for b in heads if site.wants(b)] if site.is_preview else [site.branch]
                for branch in branches:
                    head = heads.get(branch)
                    if head is None:
                        continue
                    # A preview's slot is made by its push: only a held draft of it lands.
                    target = targets.branch_target(site, branch)
                    try:
                        landed = self._catch_up(target, head, queue=queue and not site.is_preview)
                    except Exception:  # the next start or poll tries again
                        log.exception("catching up slot %s with %s failed", target.slot, branch)
                        continue
                    if landed is not None:
                        done.append(landed)
        return done

    def _catch_up(self, target: Target, head: str, *, queue: bool) -> int | None:
        slot, repo = target.slot, target.site.repo
        with self.pool.connection() as conn:
            live = gitjobs.live_git_source(conn, slot)
            if live is not None and live["commit_sha"] == head:
                return None
            row = gitjobs.pushed_deployment(conn, slot, repo.text, target.branch, head)
            if row is None and queue and live is not None:
                queue = self._may_queue(conn, slot, head)
        if row is not None and row["state"] == "ready":
            if row["error"]:
                return None  # a landing kept it a draft (a locked slot): its note says why; promote it
            deployment_id = int(row["id"])
            try:
                done = self.deployer.publish_draft(
                    slot,
                    deployment_id,
                    refused=lambda: self._refused(target, head) or self._changed(slot, deployment_id),
                )
            except DrophostError as exc:  # recorded on the deployment too; a new commit deploys the branch
                log.warning("slot %s: deployment %s could not be made live: %s", slot, deployment_id, exc.message)
                self._record("drophost", target, deployment_id, "failed", exc.message)
                return None
            if done["status"] != "live":
                return None
            log.info("slot %s: deployment %s went live (its post-receive did not land it)", slot, deployment_id)
            self._record("drophost", target, deployment_id, "live", None)
            return deployment_id
        if row is not None or not queue or live is None:
            return None
        log.info("slot %s serves %s, its branch holds %s: deploying it", slot, live["commit_sha"], head)
        return self.intake.enqueue_target(target, trigger="poll", pusher=None)

    def _may_queue(self, conn: Conn, slot: str, head: str) -> bool:
        """Whether a deploy of `head` is queued at start: only a commit git never deployed to the
        slot (any outcome: a failed one is not retried, one a user rolled back stays so), to a slot
        not locked and not switched (promote, rollback, offline, upload) since its newest git deploy."""
        if gitjobs.had_commit(conn, slot, head) or gitjobs.has_pending(conn, slot):
            return False
        if audit.slot_lock(conn, slot) is not None:
            return False
        newest = gitjobs.newest_git_deployment(conn, slot)
        return newest is None or not gitjobs.activated_since(conn, slot, int(newest["id"]))

    def _changed(self, slot: str, deployment_id: int) -> str | None:
        """Why catch_up must not land a draft whose slot switched since its push (a promote,
        rollback, upload, another deploy, or taken offline): that later choice stands. Asked under
        the slot's lock. A landing that never reached the database recorded no switch."""
        with self.pool.connection() as conn:
            changed = gitjobs.activated_since(conn, slot, deployment_id)
        if not changed:
            return None
        return f"the slot changed since this push: promote deployment {deployment_id} to make it live"

    def _refused(self, target: Target, pushed: str) -> str | None:
        """Why the draft of the object `pushed` must not go live now (asked under the slot's lock), or None."""
        shown = target.branch if target.ref is None else target.ref.removeprefix("refs/tags/")
        # The ref's own value, compared with the object pushed to it (a tag's, not peeled).
        head = self.source.hosted_ref(target.site.repo, target.ref or f"refs/heads/{target.branch}")
        if head is None:
            return f"{shown} no longer exists"
        if head != pushed:
            return f"a later push moved {shown} on to {head[:12]}; that push makes it live"
        tag = refs.tag_of(target.ref or "")
        newer = None if tag is None else targets.older_than(target.site, tag, self.intake.tags_given(target.slot))
        return None if newer is None else f"the slot has the newer tag {newer}"

    def _record(self, actor: str, target: Target, deployment_id: int, result: str, error: str | None) -> None:
        detail = f"deployment {deployment_id} of {target.site.repo.text} {target.branch}, after git moved it"
        try:
            with self.pool.connection() as conn:
                audit.record(
                    conn,
                    actor=actor,
                    action="git_deploy_result",
                    target=target.slot,
                    result=result,
                    detail=f"{detail}: {error}" if error else detail,
                )
        except Exception:  # the outcome itself is recorded on the deployment
            log.exception("could not write the audit log entry for deployment %s", deployment_id)

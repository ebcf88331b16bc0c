"""What applying deploy.yaml would change against what is live (pure): `drophost plan` and reload."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drophost.gitops.manifest import Manifest, SiteSpec
from drophost.gitops.refs import PR_FIELD, TAGS_PREFIX
from drophost.gitops.repourls import repo_key, strip_credentials

ADD, CHANGE, DEPLOY, REMOVE, KEEP, DRIFT = "add", "change", "deploy", "remove", "keep", "drift"
_MARKS = {ADD: "+", CHANGE: "~", DEPLOY: "+", REMOVE: "-", KEEP: "=", DRIFT: "!"}


@dataclass(frozen=True)
class Change:
    action: str
    slot: str
    detail: str
    site: SiteSpec | None = None


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    def of(self, *actions: str) -> list[Change]:
        return [change for change in self.changes if change.action in actions]

    def to_json(self) -> list[dict[str, str]]:
        return [{"action": c.action, "slot": c.slot, "detail": c.detail} for c in self.changes]

    def render(self) -> str:
        width = max((len(c.slot) for c in self.changes), default=0)
        lines = [f"{_MARKS[c.action]} {c.slot.ljust(width)}  {c.detail}" for c in self.changes]
        counts = (len(self.of(ADD, DEPLOY)), len(self.of(CHANGE)), len(self.of(REMOVE)))
        lines.append("Plan: {} to deploy, {} to change, {} to take offline.".format(*counts))
        if self.of(DRIFT):
            lines.append(f"Drift: {len(self.of(DRIFT))} slot(s) serve what deploy.yaml did not deploy.")
        return "\n".join(lines)


def source_of(site: SiteSpec) -> str:
    if site.tags is not None:
        where = f"{strip_credentials(site.repo.text)} tags {site.tags} (the newest by version)"
    elif site.is_pull_request:
        where = f"{strip_credentials(site.repo.text)} pull requests" + (", forks too" if site.forks else "")
    else:
        where = f"{strip_credentials(site.repo.text)} {site.branch}"
    return f"{where} (path {site.path})" if site.path else where


def plan(manifest: Manifest, managed: Iterable[Mapping[str, Any]], live: Mapping[str, Mapping[str, Any]]) -> Plan:
    """Fixed sites to deploy or change, managed slots no longer declared to take offline, and drift:
    a declared slot serving something other than git (a forced upload)."""
    recorded = {row["slot"]: row for row in managed}
    live_slots = set(live)
    changes: list[Change] = []
    for slot, site in sorted(manifest.fixed_sites().items()):
        row = recorded.get(slot)
        if row is None:
            changes.append(Change(ADD, slot, f"deploy {source_of(site)}", site))
            continue
        differences = _differences(row, site)
        if differences:
            changes.append(Change(CHANGE, slot, "; ".join(differences), site))
        elif slot not in live_slots:
            changes.append(Change(DEPLOY, slot, f"not live: deploy {source_of(site)}", site))
        elif live[slot].get("source", "git") != "git":
            detail = (
                f"drift: serves a forced upload (deployment {live[slot].get('deployment_id')}), not {source_of(site)}"
            )
            changes.append(Change(DRIFT, slot, detail, site))
        else:
            changes.append(Change(KEEP, slot, "unchanged", site))
    fixed = manifest.fixed_sites()
    templates = {
        (site.slot, repo_key(site.repo.text)) for site in manifest.sites if site.is_preview or site.is_pull_request
    }
    for site in manifest.sites:
        if site.is_pull_request:
            changes.append(Change(KEEP, site.slot, f"previews {source_of(site)}: one slot per open pull request"))
    for slot, row in sorted(recorded.items()):
        if slot in fixed:
            continue
        if row.get("template") and (row["template"], repo_key(row["repo"])) in templates:
            kind = "pull request" if PR_FIELD in row["template"] else "branch"
            changes.append(Change(KEEP, slot, f"preview of {kind} {row['branch']}"))
            continue
        changes.append(Change(REMOVE, slot, "take offline (no longer in deploy.yaml; its history stays)"))
    return Plan(tuple(changes))


def _differences(row: Mapping[str, Any], site: SiteSpec) -> list[str]:
    found = []
    if repo_key(row["repo"]) != repo_key(site.repo.text):
        found.append(f"repo {strip_credentials(row['repo'])} -> {strip_credentials(site.repo.text)}")
    if row["branch"] != site.tracked:
        if row["branch"].startswith(TAGS_PREFIX) or site.tags is not None:
            found.append(f"{_followed(row['branch'])} -> {_followed(site.tracked)}")
        else:
            found.append(f"branch {row['branch']} -> {site.branch}")
    if (row["path"] or "") != site.path:
        found.append(f"path {row['path'] or '/'} -> {site.path or '/'}")
    return found


def _followed(tracked: str) -> str:
    return f"tags {tracked[len(TAGS_PREFIX) :]}" if tracked.startswith(TAGS_PREFIX) else f"branch {tracked}"

"""What a delivery deploys (pure): branch pushes, tag pushes and pull requests become `Target`s.

Branch pushes deploy the sites that want the branch. A tag push deploys a `tags:` site whose
pattern matches it unless the slot was already given a newer tag (gitops/refs.py's version
order): an older tag, or a deleted one, never rolls a site back. A pull request deploys its head
to each `{pr}` site's slot (named from the number only); one from a fork only where the site
says `previews: {forks: true}`, and only from the ref the forge keeps in the BASE repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drophost.gitops import refs
from drophost.gitops.manifest import SiteSpec
from drophost.gitops.webhooks import Event, PullRequest


@dataclass(frozen=True)
class Target:
    """One deploy: the site, what the deployment shows as its branch (a branch name, or a full ref
    such as refs/tags/v1.2 or refs/pull/7/head), the slot, and the ref fetched when it is not
    refs/heads/<branch>."""

    site: SiteSpec
    branch: str
    slot: str
    ref: str | None = None

    @property
    def template(self) -> str | None:
        return self.site.slot if self.site.is_preview or self.site.is_pull_request else None


@dataclass(frozen=True)
class Decision:
    deploys: tuple[Target, ...] = ()
    removed: tuple[str, ...] = ()
    # Why something asked for was not deployed (a fork, an older tag): answered and logged.
    refused: tuple[str, ...] = field(default=())
    matched: bool = False


def branch_target(site: SiteSpec, branch: str) -> Target:
    return Target(site, branch, site.slot_for(branch))


def tag_target(site: SiteSpec, tag: str) -> Target:
    ref = refs.tag_ref(tag)
    return Target(site, ref, site.slot, ref)


def older_than(site: SiteSpec, tag: str, given: Sequence[str]) -> str | None:
    """The newest tag the slot was given (refs from its git jobs) that `tag` is older than, if any."""
    known = [name for ref in given if (name := refs.tag_of(ref)) is not None and site.wants_tag(name)]
    best = refs.newest(known)
    return best if best is not None and refs.is_older(tag, best) else None


def for_push(event: Event, sites: Sequence[SiteSpec], given: Callable[[str], Sequence[str]]) -> Decision:
    """A push's branch and tag updates against the signed sites; `given(slot)` lists a slot's tag refs."""
    deploys: list[Target] = []
    removed: list[str] = []
    refused: list[str] = []
    matched = False
    for update in event.updates:
        for site in sites:
            if update.tag:
                if not site.wants_tag(update.branch):
                    continue
                matched = True
                newer = older_than(site, update.branch, given(site.slot))
                if newer is not None:
                    refused.append(
                        f"tag {update.branch} is older than {newer}, which slot {site.slot} was given:"
                        " a site following tags never rolls back"
                    )
                    continue
                deploys.append(tag_target(site, update.branch))
            elif site.wants(update.branch):
                matched = True
                if not update.deleted:
                    deploys.append(branch_target(site, update.branch))
                elif site.is_preview:
                    removed.append(site.slot_for(update.branch))
    return Decision(tuple(deploys), tuple(removed), tuple(refused), matched)


def for_pull_request(provider: str, pull: PullRequest, sites: Sequence[SiteSpec]) -> Decision:
    """A pull request against the signed `{pr}` sites of its base repository."""
    deploys: list[Target] = []
    removed: list[str] = []
    refused: list[str] = []
    for site in sites:
        if not site.is_pull_request:
            continue
        slot = refs.pr_slot(site.slot, pull.number)
        if pull.action == "close":
            removed.append(slot)
            continue
        if pull.fork and not site.forks:
            refused.append(
                f"pull request #{pull.number} comes from a fork: slot {slot} ({site.slot}) previews forks"
                " only with previews: {forks: true}"
            )
            continue
        if pull.head_ref is None:
            refused.append(
                f"pull request #{pull.number} comes from a fork, and {provider} keeps no ref of its head in the"
                " base repository: there is nothing DropHost may fetch"
            )
            continue
        if refs.is_pull_ref(pull.head_ref):
            deploys.append(Target(site, pull.head_ref, slot, pull.head_ref))
        else:  # a Bitbucket source branch in the base repository
            branch = pull.head_ref.removeprefix("refs/heads/")
            deploys.append(Target(site, branch, slot))
    return Decision(tuple(deploys), tuple(removed), tuple(refused), matched=bool(deploys or removed or refused))

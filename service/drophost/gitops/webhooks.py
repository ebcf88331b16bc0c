"""Push and pull-request webhooks (pure): verify the signature over the raw body, then read the
push (branches and tags) or the pull request out of the payload."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drophost.errors import BadRequestError, DrophostError, NotFoundError, UnauthorizedError
from drophost.gitops.refs import pr_number
from drophost.gitops.repourls import check_branch
from drophost.jsonbody import load_object

ZERO_SHA = "0" * 40
_URL_KEYS = ("clone_url", "html_url", "ssh_url", "git_http_url", "git_ssh_url", "http_url", "url", "web_url")


@dataclass(frozen=True)
class Provider:
    name: str
    signature_headers: tuple[str, ...]
    # "prefixed": "sha256=<hex HMAC>", "hex": bare hex HMAC, "token": the secret itself.
    scheme: str
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    # The provider documents the event header as sent with every delivery: one without it is not from there.
    event_required: bool = True


PROVIDERS = {
    p.name: p
    for p in (
        Provider("github", ("x-hub-signature-256",), "prefixed", ("x-github-event",), ("x-github-delivery",)),
        Provider(
            "gitea",
            ("x-gitea-signature", "x-forgejo-signature", "x-gogs-signature"),
            "hex",
            ("x-gitea-event", "x-forgejo-event", "x-gogs-event"),
            ("x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery"),
        ),
        Provider("gitlab", ("x-gitlab-token",), "token", ("x-gitlab-event",), ("x-gitlab-event-uuid",)),
        Provider("bitbucket", ("x-hub-signature",), "prefixed", ("x-event-key",), ("x-request-uuid", "x-request-id")),
        Provider("generic", ("x-signature",), "prefixed", ("x-event",), ("x-delivery-id",), event_required=False),
    )
}


@dataclass(frozen=True)
class RefUpdate:
    branch: str  # the branch, or the tag's name when `tag`
    deleted: bool
    commit: str | None = None
    tag: bool = False


@dataclass(frozen=True)
class PullRequest:
    """A pull (merge) request opened, updated or closed. `head_ref` is where its head commit is in
    the BASE repository (refs/pull/N/head, refs/merge-requests/N/head, or a Bitbucket source branch);
    None when the provider keeps none there (a Bitbucket fork). Nothing here is a URL to fetch."""

    number: int
    action: str  # "deploy" or "close"
    fork: bool
    head_ref: str | None
    head_branch: str | None = None
    head_commit: str | None = None


@dataclass(frozen=True)
class Event:
    """What a delivery says: a ping, a push (branch and tag updates), a pull request, or something ignored."""

    kind: str  # "ping", "push", "pull_request" or "ignored"
    repo_urls: tuple[str, ...] = ()
    updates: tuple[RefUpdate, ...] = ()
    pusher: str | None = None
    reason: str = ""
    pull_request: PullRequest | None = None


def provider(name: str) -> Provider:
    if name not in PROVIDERS:
        raise NotFoundError(f'there is no webhook endpoint for "{name[:40]}"; use one of {", ".join(PROVIDERS)}')
    return PROVIDERS[name]


def header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verified_secrets(p: Provider, headers: Mapping[str, str], body: bytes, secrets: list[str]) -> list[str]:
    """The configured secrets this delivery is signed with; 401 if none, before the body is parsed."""
    given = header(headers, p.signature_headers)
    wanted = _title(p.signature_headers[0])
    if given is None or not given.strip():
        raise UnauthorizedError(f"the delivery has no {wanted} header; configure the webhook secret")
    if not given.isascii():
        raise UnauthorizedError(f"the {wanted} header is not a valid signature")
    if p.scheme == "prefixed" and not given.startswith("sha256="):
        raise UnauthorizedError(f'the {wanted} header must look like "sha256=<hex digest>"')
    # Exactly the documented form (lowercase hex), in constant time: no case folding, no trimming.
    raw = given.encode("ascii")
    found = [secret for secret in secrets if hmac.compare_digest(_signature(p, secret, body), raw)]
    if not found:
        raise UnauthorizedError(f"the {wanted} header does not match the configured webhook secret")
    return found


def _signature(p: Provider, secret: str, body: bytes) -> bytes:
    if p.scheme == "token":
        return secret.encode()
    return ("sha256=" if p.scheme == "prefixed" else "").encode() + sign(secret, body).encode()


def delivery_id(p: Provider, headers: Mapping[str, str]) -> str | None:
    value = header(headers, p.delivery_headers)
    if value is None or not value.isascii() or not value.strip():
        return None
    return value.strip()[:200]


def parse_event(p: Provider, headers: Mapping[str, str], body: bytes) -> Event:
    """Read a verified delivery; 400 when it names no event or is not a JSON object nested a few levels."""
    event_name = (header(headers, p.event_headers) or "").strip().lower()
    if not event_name and p.event_required:
        raise BadRequestError(f"the delivery has no {_title(p.event_headers[0])} header saying which event it is")
    payload = load_object(body, what="the webhook body")
    parser = {
        "github": _github,
        "gitea": _gitea,
        "gitlab": _gitlab,
        "bitbucket": _bitbucket,
        "generic": _generic,
    }[p.name]
    return parser(event_name, payload)


# -- providers -----------------------------------------------------------------------------------
def _github(event: str, payload: dict[str, Any]) -> Event:
    if event == "ping" or "zen" in payload:
        return Event("ping")
    if event == "pull_request":
        return _github_like_pull(payload, "github", _text(_get(payload, "sender", "login")))
    if event != "push":
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    return _github_like_push(payload, _text(_get(payload, "pusher", "name")))


def _gitea(event: str, payload: dict[str, Any]) -> Event:
    urls = _repo_urls(payload.get("repository"))
    pusher = _text(_get(payload, "pusher", "login")) or _text(_get(payload, "pusher", "username"))
    if event == "delete":
        if payload.get("ref_type") != "branch" or not isinstance(payload.get("ref"), str):
            return Event("ignored", reason="only branch deletions are acted on")
        return Event("push", urls, (RefUpdate(_strip_heads(payload["ref"]), True),), pusher)
    if event in ("pull_request", "pull_request_sync"):
        return _github_like_pull(payload, "gitea", _text(_get(payload, "sender", "login")))
    if event != "push":
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    return _github_like_push(payload, pusher)


def _github_like_push(payload: dict[str, Any], pusher: str | None) -> Event:
    urls = _repo_urls(payload.get("repository"))
    ref = payload.get("ref")
    after = _text(payload.get("after"))
    deleted = payload.get("deleted") is True or after == ZERO_SHA
    if isinstance(ref, str) and ref.startswith("refs/tags/"):
        return _tag_push(urls, ref, deleted, after, pusher)
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Event("ignored", urls, reason="the push is not to a branch")
    return Event("push", urls, (RefUpdate(ref[len("refs/heads/") :], deleted, None if deleted else after),), pusher)


def _tag_push(urls: tuple[str, ...], ref: str, deleted: bool, after: str | None, pusher: str | None) -> Event:
    # A deleted tag is never acted on: a site following tags does not roll back to an older one.
    if deleted:
        return Event("ignored", urls, reason="a deleted tag is not acted on: sites following tags never roll back")
    return Event("push", urls, (RefUpdate(ref[len("refs/tags/") :], False, after, tag=True),), pusher)


_GITHUB_ACTIONS = {"opened": "deploy", "reopened": "deploy", "synchronize": "deploy", "synchronized": "deploy",
                   "closed": "close"}  # fmt: skip


def _github_like_pull(payload: dict[str, Any], provider: str, sender: str | None) -> Event:
    """GitHub's pull_request event, and Gitea's and Forgejo's, which copy its shape ("synchronized")."""
    urls = _repo_urls(payload.get("repository"))
    pull = payload.get("pull_request")
    number = pr_number(payload.get("number")) or pr_number(_get(pull, "number"))
    action = payload.get("action")
    if number is None or not isinstance(pull, dict):
        return Event("ignored", urls, reason="the pull_request event names no pull-request number")
    wanted = _GITHUB_ACTIONS.get(action) if isinstance(action, str) else None
    if wanted is None:
        shown = action[:40] if isinstance(action, str) else "?"
        return Event("ignored", urls, reason=f'the pull request was "{shown}": only opened, updated and closed count')
    base, head = _get(pull, "base", "repo"), _get(pull, "head", "repo")
    keys = ("id", "full_name") if provider == "github" else ("id",)
    same = (
        isinstance(base, dict)
        and isinstance(head, dict)
        and all(base.get(k) is not None and base.get(k) == head.get(k) for k in keys)
    )
    if provider == "gitea" and isinstance(_get(pull, "base", "repo_id"), int):
        same = same and _get(pull, "base", "repo_id") == _get(pull, "head", "repo_id")
    request = PullRequest(
        number=number,
        action=wanted,
        fork=not same,
        head_ref=f"refs/pull/{number}/head",
        head_branch=_text(_get(pull, "head", "ref")),
        head_commit=_text(_get(pull, "head", "sha")),
    )
    return Event("pull_request", urls, pusher=sender, pull_request=request)


def _gitlab(event: str, payload: dict[str, Any]) -> Event:
    kind = payload.get("object_kind")
    urls = _repo_urls(payload.get("project")) + _repo_urls(payload.get("repository"))
    pusher = _text(payload.get("user_username")) or _text(payload.get("user_name"))
    if event == "merge request hook" and kind == "merge_request":
        return _gitlab_merge_request(payload, urls)
    if event == "tag push hook" and kind == "tag_push":
        ref = payload.get("ref")
        if not isinstance(ref, str) or not ref.startswith("refs/tags/"):
            return Event("ignored", urls, reason="the tag push names no tag")
        after = _text(payload.get("after"))
        return _tag_push(urls, ref, after == ZERO_SHA, after, pusher)
    if event != "push hook" or kind != "push":
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Event("ignored", urls, reason="the push is not to a branch")
    after = _text(payload.get("after"))
    deleted = after == ZERO_SHA
    return Event("push", urls, (RefUpdate(ref[len("refs/heads/") :], deleted, None if deleted else after),), pusher)


def _gitlab_merge_request(payload: dict[str, Any], urls: tuple[str, ...]) -> Event:
    """GitLab's Merge Request Hook: open/reopen deploy, an update deploys only when it brought new
    commits (`oldrev` is there), close/merge take the preview offline."""
    attributes = payload.get("object_attributes")
    number = pr_number(_get(attributes, "iid"))
    action = _get(attributes, "action")
    sender = _text(_get(payload, "user", "username"))
    if number is None or not isinstance(attributes, dict):
        return Event("ignored", urls, reason="the merge request event names no merge-request number (iid)")
    if action in ("open", "reopen") or (action == "update" and attributes.get("oldrev")):
        wanted = "deploy"
    elif action in ("close", "merge"):
        wanted = "close"
    else:
        shown = action[:40] if isinstance(action, str) else "?"
        return Event("ignored", urls, reason=f'the merge request was "{shown}": only new commits, open and close count')
    source, target = attributes.get("source_project_id"), attributes.get("target_project_id")
    request = PullRequest(
        number=number,
        action=wanted,
        fork=source is None or source != target,
        head_ref=f"refs/merge-requests/{number}/head",
        head_branch=_text(attributes.get("source_branch")),
        head_commit=_text(_get(attributes, "last_commit", "id")),
    )
    return Event("pull_request", urls, pusher=sender, pull_request=request)


def _bitbucket(event: str, payload: dict[str, Any]) -> Event:
    if event == "diagnostics:ping" or payload.get("test") is True:
        return Event("ping")
    repository = payload.get("repository")
    urls = _repo_urls(repository) + _bitbucket_links(repository)
    updates: list[RefUpdate] = []
    if event == "repo:push":
        pusher = _text(_get(payload, "actor", "nickname")) or _text(_get(payload, "actor", "display_name"))
        changes = _get(payload, "push", "changes")
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):
                continue
            new, old = change.get("new"), change.get("old")
            if isinstance(new, dict) and new.get("type") == "branch" and isinstance(new.get("name"), str):
                updates.append(RefUpdate(new["name"], False, _text(_get(new, "target", "hash"))))
            elif isinstance(new, dict) and new.get("type") == "tag" and isinstance(new.get("name"), str):
                updates.append(RefUpdate(new["name"], False, _text(_get(new, "target", "hash")), tag=True))
            elif (
                new is None
                and isinstance(old, dict)
                and old.get("type") == "branch"
                and isinstance(old.get("name"), str)
            ):
                updates.append(RefUpdate(old["name"], True))
    elif event == "repo:refs_changed":
        pusher = _text(_get(payload, "actor", "name")) or _text(_get(payload, "actor", "slug"))
        for change in payload.get("changes") or []:
            if not isinstance(change, dict):
                continue
            ref = change.get("refId") or _get(change, "ref", "id")
            if _get(change, "ref", "type") == "TAG" and isinstance(ref, str) and ref.startswith("refs/tags/"):
                if change.get("type") != "DELETE" and change.get("toHash") != ZERO_SHA:
                    updates.append(RefUpdate(ref[len("refs/tags/") :], False, _text(change.get("toHash")), tag=True))
                continue
            if _get(change, "ref", "type") != "BRANCH":
                continue
            if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
                continue
            deleted = change.get("type") == "DELETE" or change.get("toHash") == ZERO_SHA
            commit = None if deleted else _text(change.get("toHash"))
            updates.append(RefUpdate(ref[len("refs/heads/") :], deleted, commit))
    elif event in _BITBUCKET_ACTIONS:
        return _bitbucket_pull(payload, urls, _BITBUCKET_ACTIONS[event])
    else:
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    if not updates:
        return Event("ignored", urls, reason="the push changed no branch")
    return Event("push", urls, tuple(updates), pusher)


# Bitbucket Cloud: fulfilled is merged, rejected is declined.
_BITBUCKET_ACTIONS = {"pullrequest:created": "deploy", "pullrequest:updated": "deploy",
                      "pullrequest:fulfilled": "close", "pullrequest:rejected": "close"}  # fmt: skip


def _bitbucket_pull(payload: dict[str, Any], urls: tuple[str, ...], action: str) -> Event:
    """Bitbucket Cloud keeps no ref for a pull request: the head is the source branch, which is in
    the base repository unless the pull request comes from a fork (then there is nothing to fetch)."""
    pull = payload.get("pullrequest")
    number = pr_number(_get(pull, "id"))
    if number is None:
        return Event("ignored", urls, reason="the pull request event names no pull-request id")
    source = _get(pull, "source", "repository")
    destination = _get(pull, "destination", "repository")
    same = (
        isinstance(source, dict)
        and isinstance(destination, dict)
        and any(source.get(k) is not None and source.get(k) == destination.get(k) for k in ("uuid", "full_name"))
    )
    branch = _text(_get(pull, "source", "branch", "name"))
    head_ref = None
    if same and branch is not None:
        try:
            head_ref = "refs/heads/" + check_branch(branch)
        except DrophostError:
            head_ref = None
    request = PullRequest(
        number=number,
        action=action,
        fork=not same,
        head_ref=head_ref,
        head_branch=branch,
        head_commit=_text(_get(pull, "source", "commit", "hash")),
    )
    actor = _text(_get(payload, "actor", "nickname")) or _text(_get(payload, "actor", "display_name"))
    return Event("pull_request", urls, pusher=actor, pull_request=request)


def _generic(event: str, payload: dict[str, Any]) -> Event:
    """{"repo": URL, "branch": NAME, "deleted": false, "pusher": NAME}; header X-Event: ping for a test."""
    if event == "ping":
        return Event("ping")
    repo, branch = payload.get("repo"), payload.get("branch")
    if not isinstance(repo, str) or not isinstance(branch, str):
        raise BadRequestError('the generic webhook body needs "repo" and "branch" text fields')
    deleted = payload.get("deleted") is True
    return Event("push", (repo,), (RefUpdate(_strip_heads(branch), deleted),), _text(payload.get("pusher")))


# -- helpers -------------------------------------------------------------------------------------
def _repo_urls(repository: Any) -> tuple[str, ...]:
    if not isinstance(repository, dict):
        return ()
    return tuple(v for k in _URL_KEYS if isinstance(v := repository.get(k), str) and v)


def _bitbucket_links(repository: Any) -> tuple[str, ...]:
    links = repository.get("links") if isinstance(repository, dict) else None
    if not isinstance(links, dict):
        return ()
    found: list[str] = []
    for key in ("html", "clone", "self"):
        value = links.get(key)
        for link in value if isinstance(value, list) else [value]:
            if isinstance(link, dict) and isinstance(link.get("href"), str):
                found.append(link["href"])
    return tuple(found)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _strip_heads(ref: str) -> str:
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-")).replace("Github", "GitHub")

"""Push webhooks (pure): verify the signature over the raw body, then read the push out of the payload."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drophost.errors import BadRequestError, NotFoundError, UnauthorizedError
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
    branch: str
    deleted: bool
    commit: str | None = None


@dataclass(frozen=True)
class Event:
    """What a delivery says: a ping, a push (one or more branch updates), or something ignored."""

    kind: str  # "ping", "push" or "ignored"
    repo_urls: tuple[str, ...] = ()
    updates: tuple[RefUpdate, ...] = ()
    pusher: str | None = None
    reason: str = ""


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
    if event != "push":
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    return _github_like_push(payload, pusher)


def _github_like_push(payload: dict[str, Any], pusher: str | None) -> Event:
    urls = _repo_urls(payload.get("repository"))
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Event("ignored", urls, reason="the push is not to a branch")
    after = _text(payload.get("after"))
    deleted = payload.get("deleted") is True or after == ZERO_SHA
    return Event("push", urls, (RefUpdate(ref[len("refs/heads/") :], deleted, None if deleted else after),), pusher)


def _gitlab(event: str, payload: dict[str, Any]) -> Event:
    kind = payload.get("object_kind")
    if event != "push hook" or kind != "push":
        if event == "tag push hook" or kind == "tag_push":
            return Event("ignored", reason="tag pushes are not deployed")
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    urls = _repo_urls(payload.get("project")) + _repo_urls(payload.get("repository"))
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return Event("ignored", urls, reason="the push is not to a branch")
    after = _text(payload.get("after"))
    deleted = after == ZERO_SHA
    pusher = _text(payload.get("user_username")) or _text(payload.get("user_name"))
    return Event("push", urls, (RefUpdate(ref[len("refs/heads/") :], deleted, None if deleted else after),), pusher)


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
            if not isinstance(change, dict) or _get(change, "ref", "type") != "BRANCH":
                continue
            ref = change.get("refId") or _get(change, "ref", "id")
            if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
                continue
            deleted = change.get("type") == "DELETE" or change.get("toHash") == ZERO_SHA
            commit = None if deleted else _text(change.get("toHash"))
            updates.append(RefUpdate(ref[len("refs/heads/") :], deleted, commit))
    else:
        return Event("ignored", reason=f'the "{event[:40]}" event is not a push')
    if not updates:
        return Event("ignored", urls, reason="the push changed no branch")
    return Event("push", urls, tuple(updates), pusher)


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
